package agent

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/restic-manager/restic-manager/internal/tlsutil"
	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// A dump job sends a file or folder of a snapshot to the console, which
// relays it to the browser that asked (console/api/download.go). The bytes
// go as the body of one HTTPS POST to the console's server URL (the one
// this agent enrolled with, never a URL from the command: the agent sends
// its credential there), verified against the CA pinned at enrolment, and
// authenticated with the agent's own MQTT credential. Nothing in between
// buffers more than a few small buffers: restic writes into a pipe, the
// pipe into gzip (a folder) and an io.Pipe that the HTTP client reads as
// it sends, so a slow browser slows the TCP connection, which blocks the
// client, which blocks restic (TestUploadBackPressure measures it).

// dumpProgressEvery is how often a dump reports the bytes sent.
const dumpProgressEvery = time.Second

// runDump runs a dump job: restic's output streamed to the console.
func (a *Agent) runDump(ctx context.Context, cmd wire.Command, spec runner.Spec, pump *progressPump, markRunning func() error) runner.Result {
	var args wire.DumpArgs
	if err := json.Unmarshal(cmd.Args, &args); err != nil {
		return runner.Result{Status: wire.StatusFailed, ExitCode: -1, EndedAt: time.Now(), Error: "dump arguments: " + err.Error()}
	}
	target, err := a.dumpURL(cmd.JobID)
	if err != nil {
		return runner.Result{Status: wire.StatusFailed, ExitCode: -1, EndedAt: time.Now(), Error: err.Error()}
	}
	// As enrolment does: the pinned CA (or the system roots for an
	// operator's own certificate), no proxy; HTTP/1.1, one stream whose
	// flow control is the connection's.
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: tlsutil.ClientConfig(a.cfg.CAFingerprint, target.Hostname()),
	}}
	defer hc.CloseIdleConnections()
	var res runner.Result
	up := uploader{client: hc, url: target.String(), user: a.cfg.Username, password: a.cfg.Password, gzip: args.Archive == wire.DumpTarGz}
	var started time.Time
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() { // owned here: stopped and waited for below
		defer close(progressDone)
		t := time.NewTicker(dumpProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				p := wire.Progress{BytesDone: up.read.Load(), BytesTotal: args.Size}
				if args.Size > 0 {
					p.Percent = clampPercent(100 * float64(p.BytesDone) / float64(args.Size))
				}
				pump.send(p)
			}
		}
	}()
	sent, uerr := up.send(ctx, func(w io.Writer) error {
		spec.Dump.To = w
		res = a.runner.Run(ctx, spec, runner.Hooks{
			OnLocked: markRunning,
			OnStart: func(at time.Time) {
				started = at
				pump.started(at)
			},
		})
		if res.Status != wire.StatusSucceeded {
			return fmt.Errorf("%w %s: %s", errDumpRun, res.Status, res.Error)
		}
		return nil
	})
	close(stopProgress)
	<-progressDone
	switch {
	case uerr == nil || errors.Is(uerr, errDumpRun):
	case res.Status == wire.StatusSucceeded:
		res.Status, res.Error = wire.StatusFailed, uerr.Error()
	case res.Status == wire.StatusFailed:
		// restic failed because its reader did: the console's word says
		// why ("the browser went away"), not the closed pipe.
		res.Error = uerr.Error()
	}
	if res.Status == "" { // the upload failed before restic ran
		res = runner.Result{Status: wire.StatusFailed, ExitCode: -1, EndedAt: time.Now(), Error: uerr.Error()}
	}
	secs := 0.0
	if !started.IsZero() {
		secs = time.Since(started).Seconds()
	}
	res.Output, _ = json.Marshal(wire.DumpOutput{Path: args.Path, Archive: args.Archive, BytesRead: up.read.Load(), BytesSent: sent, Seconds: secs})
	return res
}

// errDumpRun marks the error of the restic run itself (not the upload's).
var errDumpRun = errors.New("restic dump")

// dumpURL is where the console takes dump job jobID: on its server URL.
func (a *Agent) dumpURL(jobID string) (*url.URL, error) {
	if a.cfg.ServerURL == "" {
		return nil, errors.New("this agent's configuration has no server_url (enrolled by an old version): downloads need it; enrol again or add server_url")
	}
	u, err := url.Parse(strings.TrimRight(a.cfg.ServerURL, "/") + wire.DumpUploadPath(jobID))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("server_url %q is not an http(s) URL", a.cfg.ServerURL)
	}
	return u, nil
}

// uploader POSTs what fill writes to url as one request body, gzipped
// when gzip is set.
type uploader struct {
	client         *http.Client
	url            string
	user, password string
	gzip           bool
	read           atomic.Uint64 // bytes fill wrote (before gzip)
}

// send runs fill with a writer into the request body and returns the
// bytes sent. The request shares ctx: when ctx ends, the body's writer
// fails at once (what runner.DumpArgs.To asks). A fill that fails aborts
// the body, so the console sees a broken stream, never a short file that
// looks whole.
func (u *uploader) send(ctx context.Context, fill func(io.Writer) error) (uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, pr)
	if err != nil {
		return 0, fmt.Errorf("dump upload: %w", err)
	}
	req.SetBasicAuth(u.user, u.password)
	req.Header.Set("Content-Type", "application/octet-stream")
	var sentN atomic.Uint64
	sent := countingTo{n: &sentN}
	type answer struct {
		resp *http.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() { // owned here: waited for below
		resp, err := u.client.Do(req)
		if err != nil {
			pr.CloseWithError(err) // the writer fails; fill stops
		}
		answered <- answer{resp, err}
	}()
	sent.w = pw
	var w io.Writer = &sent
	var gz *gzip.Writer
	if u.gzip {
		// BestSpeed: measured on this project's 2-core machine, Go's
		// gzip takes 98 MiB/s of incompressible data at BestSpeed and
		// 13 MiB/s at the default level (text: 109 and 121 MiB/s, both
		// to about 1 %); BenchmarkDownload sends a 1 GiB file at
		// 97–108 MiB/s and its folder as .tar.gz at 64–75 MiB/s.
		gz, _ = gzip.NewWriterLevel(&sent, gzip.BestSpeed)
		w = gz
	}
	ferr := fill(&countingTo{w: w, n: &u.read})
	if ferr == nil && gz != nil {
		ferr = gz.Close()
	}
	if ferr != nil {
		pw.CloseWithError(ferr)
		cancel() // abort the request: the console must not take it as whole
	} else {
		pw.Close()
	}
	a := <-answered
	if a.err == nil {
		defer a.resp.Body.Close()
		if a.resp.StatusCode/100 != 2 { // the console's reason first: it refused before fill failed
			body, _ := io.ReadAll(io.LimitReader(a.resp.Body, 4<<10))
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &e) != nil || e.Error == "" {
				e.Error = a.resp.Status
			}
			return sent.n.Load(), fmt.Errorf("the console refused the download's bytes: %s", e.Error)
		}
	}
	switch {
	case ferr != nil:
		return sent.n.Load(), ferr
	case a.err != nil:
		return sent.n.Load(), fmt.Errorf("dump upload to the console: %w", a.err)
	}
	return sent.n.Load(), nil
}

// countingTo counts what is written through it into n.
type countingTo struct {
	w io.Writer
	n *atomic.Uint64
}

func (c *countingTo) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}
