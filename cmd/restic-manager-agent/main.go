// Command restic-manager-agent runs on each endpoint: it enrols with the
// console, keeps an MQTT session with the broker and runs restic for it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/restic-manager/restic-manager/agent"
	"github.com/restic-manager/restic-manager/internal/cli"
	"github.com/restic-manager/restic-manager/wire"
)

const usage = `restic-manager-agent: the restic-manager endpoint agent

Usage:
  restic-manager-agent enroll --server URL --token TOKEN [--config FILE] [--restic PATH]
  restic-manager-agent enroll --server URL --key KEY [--name NAME] [--labels k=v,...] [--config FILE] [--restic PATH]
  restic-manager-agent run [--config FILE] [--restic PATH]
  restic-manager-agent service install|uninstall|start|stop|restart|status|unit [--config FILE]
  restic-manager-agent version
`

func defaultConfig() string {
	if runtime.GOOS == "windows" {
		pd := os.Getenv("ProgramData")
		if pd == "" {
			pd = `C:\ProgramData`
		}
		return filepath.Join(pd, "restic-manager", "agent.yaml")
	}
	return "/etc/restic-manager/agent.yaml"
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "enroll":
		err = runEnroll(os.Args[2:])
	case "run":
		err = runAgent(os.Args[2:])
	case "service":
		err = runService(os.Args[2:])
	case "version", "--version":
		fmt.Println("restic-manager-agent", cli.Version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "restic-manager-agent: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "restic-manager-agent:", err)
		os.Exit(1)
	}
}

func runEnroll(args []string) error {
	opts, err := enrollOptions(args, os.Getenv)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := agent.Enroll(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("enrolled as host %s; config written to %s\n", cfg.HostID, opts.ConfigPath)
	return nil
}

// enrollOptions reads enroll's flags: exactly one of --token and --key
// (RM_ENROLL_TOKEN or RM_ENROLL_KEY when neither flag is given, so that a
// variable left in the environment never adds a second credential), and
// --name and --labels with a key only.
func enrollOptions(args []string, getenv func(string) string) (agent.EnrollOptions, error) {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	server := fs.String("server", "", "console URL, e.g. https://backup.example.com:8080")
	token := fs.String("token", "", "one-time enrolment token for a host made in the console (or RM_ENROLL_TOKEN)")
	key := fs.String("key", "", "reusable enrolment key: the console makes a host for this machine (or RM_ENROLL_KEY)")
	name := fs.String("name", "", "with --key: the host's name (default: this machine's hostname)")
	labels := fs.String("labels", "", "with --key: this host's own labels, k=v,... (if the key allows; the key's win on a conflict)")
	config := fs.String("config", defaultConfig(), "config file to write")
	restic := fs.String("restic", "", "restic binary (default: RM_RESTIC, else restic on PATH)")
	caFP := fs.String("ca-fingerprint", "", "SHA-256 fingerprint of the console's CA, from the enrolment command")
	if err := fs.Parse(args); err != nil {
		return agent.EnrollOptions{}, err
	}
	if fs.NArg() > 0 {
		return agent.EnrollOptions{}, fmt.Errorf("enroll: unexpected argument %q", fs.Arg(0))
	}
	if *token == "" && *key == "" {
		*token, *key = getenv("RM_ENROLL_TOKEN"), getenv("RM_ENROLL_KEY")
	}
	switch {
	case *token != "" && *key != "":
		return agent.EnrollOptions{}, fmt.Errorf("enroll: give --token or --key, not both (a token enrols a host made in the console; a key makes a new one)")
	case *token == "" && *key == "":
		return agent.EnrollOptions{}, fmt.Errorf("enroll: --token or --key is required (the console shows it with the install line)")
	case *token != "" && (*name != "" || *labels != ""):
		return agent.EnrollOptions{}, fmt.Errorf("enroll: --name and --labels go with --key (a token's host is named and labelled in the console)")
	}
	lbl, err := wire.ParseLabels(*labels)
	if err != nil {
		return agent.EnrollOptions{}, fmt.Errorf("enroll: --labels: %s", strings.TrimPrefix(err.Error(), wire.ErrInvalid.Error()+": "))
	}
	if len(lbl) == 0 {
		lbl = nil
	}
	return agent.EnrollOptions{ServerURL: *server, Token: *token, Key: *key, Name: *name, Labels: lbl,
		ConfigPath: *config, Restic: *restic, CAFingerprint: *caFP}, nil
}

func runAgent(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	config := fs.String("config", defaultConfig(), "config file")
	restic := fs.String("restic", "", "restic binary (overrides the config)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected argument %q", fs.Arg(0))
	}
	// Through kardianos/service (service.go), in the foreground as under
	// systemd or the Windows SCM.
	return runUnderService(*config, *restic)
}
