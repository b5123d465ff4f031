package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// acceptAll admits every client: the bare broker measures transport alone.
type acceptAll struct{}

func (acceptAll) AuthenticateHost(string, []byte) bool        { return true }
func (acceptAll) AuthenticateIntegration(string, []byte) bool { return true }

// countingIngestor stores nothing and counts what it is handed.
type countingIngestor struct{ n atomic.Int64 }

func (c *countingIngestor) Ingest(context.Context, string, wire.Topic, []byte) error {
	c.n.Add(1)
	return nil
}

// bareBrokerMain runs the embedded broker (same capabilities, hooks and
// persistence as the server's) with no console behind it, and serves its
// message count at http://ADDR/count.
func bareBrokerMain(args []string) error {
	fs := flag.NewFlagSet("bare-broker", flag.ContinueOnError)
	mqttAddr := fs.String("mqtt", "127.0.0.1:1884", "MQTT listen address")
	httpAddr := fs.String("http", "127.0.0.1:8084", "address serving /count")
	data := fs.String("data", "", "broker persistence directory (empty: in memory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// mochi warns about every client that leaves with its Will; only
	// errors matter here.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	ing := &countingIngestor{}
	b, err := broker.New(broker.Options{DataDir: *data, Logger: log})
	if err != nil {
		return err
	}
	if err := b.ListenTCP("mqtt", *mqttAddr, nil); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := b.Serve(acceptAll{}, ing); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer b.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/count", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, ing.n.Load())
	})
	srv := &http.Server{Addr: *httpAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// bareEnv marks a re-executed test binary as the bare broker (the test's
// own executable is not fleetsim's main).
const bareEnv = "FLEETSIM_BARE_BROKER"

// bareFigures is the ceiling's reference run.
type bareFigures struct {
	Msgs      int           `json:"msgs"`
	PerSecond float64       `json:"msgs_per_s"`
	Counted   int           `json:"counted_by_broker"`
	Process   harness.Stats `json:"process"`
}

// bareFlood starts the bare broker as its own process and floods it from
// the same number of publishers with the same messages.
func (s *sim) bareFlood(ctx context.Context, like []*simAgent) (bareFigures, error) {
	var f bareFigures
	exe, err := os.Executable()
	if err != nil {
		return f, err
	}
	mqttAddr, err := testenv.FreeAddr()
	if err != nil {
		return f, err
	}
	httpAddr, err := testenv.FreeAddr()
	if err != nil {
		return f, err
	}
	dir, err := os.MkdirTemp("", "fleetsim-bare-")
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	p, err := harness.Start(harness.Cmd{Name: "bare broker", Bin: exe,
		Args: []string{"bare-broker", "-mqtt", mqttAddr, "-http", httpAddr, "-data", filepath.Join(dir, "data")},
		Env:  []string{bareEnv + "=1"}, Log: filepath.Join(dir, "bare.log")})
	if err != nil {
		return f, err
	}
	defer func() { _ = p.Stop(10 * time.Second) }()
	count := func() (int, error) {
		resp, err := http.Get("http://" + httpAddr + "/count")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var b [32]byte
		n, _ := resp.Body.Read(b[:])
		return strconv.Atoi(strings.TrimSpace(string(b[:n])))
	}
	if err := harness.Poll(ctx, 30*time.Second, func() error {
		if err := p.Exited(); err != nil {
			return harness.Permanent(err)
		}
		_, err := count()
		return err
	}); err != nil {
		return f, fmt.Errorf("bare broker did not start: %w", err)
	}
	jobs := make([]*streamJob, len(like))
	agents := make([]*simAgent, len(like))
	for i, a := range like {
		agents[i] = &simAgent{idx: a.idx, id: a.id, password: "bare", sim: s, quiet: true}
		jobs[i] = &streamJob{a: agents[i], id: fmt.Sprintf("job-bare-%d", i), started: time.Now()}
	}
	defer func() {
		for _, a := range agents {
			a.close()
		}
	}()
	if _, err := parallel(ctx, len(agents), s.cfg.ConnParallel, func(i int) error {
		return agents[i].connect(ctx, mqttAddr)
	}); err != nil {
		return f, fmt.Errorf("connect: %w", err)
	}
	n, el, err := flood(ctx, jobs, s.cfg.Flood)
	f.Msgs = int(n)
	f.PerSecond = float64(n) / el.Seconds()
	f.Process = harness.ReadStats(p.Pid())
	if err != nil {
		return f, err
	}
	if f.Counted, err = count(); err != nil {
		return f, fmt.Errorf("count: %w", err)
	}
	return f, nil
}
