package agent

import (
	"context"
	"errors"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// progressOf is the wire form of the runner's progress.
func progressOf(p runner.Progress) wire.Progress {
	return wire.Progress{
		Percent:   clampPercent(p.Percent), // the runner reports 0–100
		BytesDone: p.BytesDone, BytesTotal: p.TotalBytes,
		FilesDone: p.FilesDone, FilesTotal: p.TotalFiles,
		CurrentFiles: p.CurrentFiles, ETASeconds: p.SecondsRemaining,
	}
}

func clampPercent(p float64) float64 {
	if p < 0 || p != p {
		return 0
	}
	if p > 100 {
		return 100
	}
	return p
}

// progressPump publishes a job's progress without ever blocking restic's
// output: only the newest report waits, older ones are replaced. Progress is
// not durable (it bypasses the outbox): a report lost to a disconnect is
// superseded by the next one, and the result carries the outcome. Its
// goroutine belongs to the job: close ends it and waits for it.
type progressPump struct {
	a      *Agent
	jobID  string
	latest chan wire.Progress
	done   chan struct{}
	seq    int64
}

func newProgressPump(a *Agent, jobID string) *progressPump {
	p := &progressPump{a: a, jobID: jobID, latest: make(chan wire.Progress, 1), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *progressPump) started(at time.Time) {
	p.send(wire.Progress{StartedAt: at.UTC()})
}

func (p *progressPump) send(pr wire.Progress) {
	for {
		select {
		case p.latest <- pr:
			return
		default:
		}
		// Replace the waiting report, but never lose the start marker.
		select {
		case old := <-p.latest:
			if !old.StartedAt.IsZero() && pr.StartedAt.IsZero() {
				pr.StartedAt = old.StartedAt
			}
		default:
		}
	}
}

func (p *progressPump) close() {
	close(p.latest)
	<-p.done
}

func (p *progressPump) loop() {
	defer close(p.done)
	<-p.a.cmReady
	for pr := range p.latest {
		p.seq++
		pr.JobID, pr.Seq = p.jobID, p.seq
		b, err := wire.Encode(&pr)
		if err != nil {
			p.a.log.Error("encode progress", "error", err)
			continue
		}
		ctx, cancel := context.WithTimeout(p.a.jobs.ctx, 5*time.Second)
		_, err = p.a.cm.Publish(ctx, &paho.Publish{Topic: wire.ProgressTopic(p.a.cfg.HostID, p.jobID), Payload: b, QoS: 1})
		cancel()
		if err != nil && !errors.Is(err, autopaho.ConnectionDownError) {
			p.a.log.Debug("progress not delivered", "error", err)
		}
	}
}
