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
	"syscall"

	"github.com/restic-manager/restic-manager/agent"
	"github.com/restic-manager/restic-manager/internal/cli"
)

const usage = `restic-manager-agent: the restic-manager endpoint agent

Usage:
  restic-manager-agent enroll --server URL --token TOKEN [--config FILE] [--restic PATH]
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
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	server := fs.String("server", "", "console URL, e.g. https://backup.example.com:8080")
	token := fs.String("token", "", "one-time enrolment token from the console")
	config := fs.String("config", defaultConfig(), "config file to write")
	restic := fs.String("restic", "", "restic binary (default: RM_RESTIC, else restic on PATH)")
	caFP := fs.String("ca-fingerprint", "", "SHA-256 fingerprint of the console's CA, from the enrolment command")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv("RM_ENROLL_TOKEN")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := agent.Enroll(ctx, agent.EnrollOptions{ServerURL: *server, Token: *token, ConfigPath: *config, Restic: *restic, CAFingerprint: *caFP})
	if err != nil {
		return err
	}
	fmt.Printf("enrolled as host %s; config written to %s\n", cfg.HostID, *config)
	return nil
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
