package agent

import (
	"sort"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/wire"
)

// onPublish runs in paho's receive loop, one message at a time, and the PUBACK
// goes out when it returns: so it records the command durably and hands it
// off, never running it here.
func (a *Agent) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	if p.Topic == wire.SchedulesDesiredTopic(a.cfg.HostID) {
		d, err := wire.DecodeSchedulesDesired(p.Payload)
		if err != nil {
			a.log.Warn("malformed desired schedules dropped", "error", err)
			return true, nil
		}
		a.offerDesired(d)
		return true, nil
	}
	if p.Topic != wire.CommandsTopic(a.cfg.HostID) {
		a.log.Warn("message on an unexpected topic ignored", "topic", p.Topic)
		return true, nil
	}
	cmd, err := wire.DecodeCommand(p.Payload)
	if err != nil {
		// Acknowledged and dropped: redelivery could never fix it.
		a.log.Warn("malformed command dropped", "error", err, "bytes", len(p.Payload))
		return true, nil
	}
	if cmd.Kind == wire.JobCancel {
		a.cancel(cmd.JobID)
		return true, nil
	}
	if a.jobs.isRefused(cmd.JobID) {
		a.log.Info("duplicate command ignored", "job_id", cmd.JobID)
		return true, nil
	}
	fresh, err := a.jr.accept(cmd, time.Now().UTC())
	if err != nil {
		// paho acknowledges the command whatever happens, and nothing would
		// send it again: report the job failed (through the outbox, which
		// keeps it in memory when the disk is full), and never run a later
		// copy of it.
		a.log.Error("cannot journal command; the job is reported failed", "job_id", cmd.JobID, "error", err)
		a.jobs.refuse(cmd.JobID)
		res := failed(cmd.JobID, time.Time{}, "the agent could not record the command in its state directory: "+err.Error())
		if b, err := wire.Encode(&res); err == nil {
			_ = a.out.Put(wire.ResultTopic(a.cfg.HostID, res.JobID), b, false)
		}
		return true, nil
	}
	if !fresh {
		a.log.Info("duplicate command ignored", "job_id", cmd.JobID)
		return true, nil
	}
	if !a.gather.add(cmd) {
		a.start(cmd)
	}
	return true, nil
}

// recover turns the journal into actions after a restart: a job that was
// running when the agent died is reported failed; a job accepted but not
// started is started now.
func (a *Agent) recover() error {
	entries, err := a.jr.all(time.Now())
	if err != nil {
		return err
	}
	// In the order the console issued them (arrival order can differ; see
	// gathering).
	sort.SliceStable(entries, func(i, j int) bool {
		if !entries[i].Command.IssuedAt.Equal(entries[j].Command.IssuedAt) {
			return entries[i].Command.IssuedAt.Before(entries[j].Command.IssuedAt)
		}
		return entries[i].ReceivedAt.Before(entries[j].ReceivedAt)
	})
	for _, e := range entries {
		switch e.State {
		case jobRunning:
			a.log.Warn("job was interrupted by an agent restart", "job_id", e.Command.JobID)
			res := wire.Result{
				JobID:     e.Command.JobID,
				Status:    wire.StatusFailed,
				ExitCode:  -1,
				StartedAt: e.StartedAt,
				EndedAt:   time.Now().UTC(),
				Error:     "the agent restarted while this job was running",
			}
			if err := a.finish(res); err != nil {
				return err
			}
		case jobReceived:
			a.start(e.Command)
		}
	}
	return nil
}

// gatherWindow is how long after a connection is up commands are gathered
// before they start (see gathering).
const gatherWindow = 750 * time.Millisecond

// gathering holds the commands that arrive right after a (re)connection:
// the broker's queue for this session, which a broker need not hand over in
// order (mochi 2.7.9 sorts it by send second, unstably). They are gathered
// until the window ends and started in the order the console issued them.
// Journaled as received, they are not lost if the agent stops first:
// recover starts them on the next run.
//
// mu guards open, gen and cmds, and nothing else is called while it is held:
// paho's callbacks (each connection attempt, each command) and the window's
// timer take it, and must never wait behind a job.
type gathering struct {
	window time.Duration // gatherWindow; tests lengthen it on a busy machine

	mu   sync.Mutex
	open bool   // from each connection attempt until its window ends
	gen  uint64 // connection attempts; a stale window timer does nothing
	cmds []wire.Command
}

// begin opens the window for a connection attempt, which from now on owns
// it and the commands already gathered.
func (g *gathering) begin() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = true
	g.gen++
}

// current is the latest connection attempt.
func (g *gathering) current() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gen
}

// add keeps cmd for the end of the window, if it is open.
func (g *gathering) add(cmd wire.Command) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return false
	}
	g.cmds = append(g.cmds, cmd)
	return true
}

// end closes the window of connection attempt gen and hands over its
// commands; ok is false when a later attempt owns the window (and them).
func (g *gathering) end(gen uint64) (cmds []wire.Command, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if gen != g.gen {
		return nil, false
	}
	cmds, g.cmds, g.open = g.cmds, nil, false
	return cmds, true
}

// take removes a gathered command (to start it for a cancel).
func (g *gathering) take(jobID string) (wire.Command, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, c := range g.cmds {
		if c.JobID == jobID {
			g.cmds = append(g.cmds[:i], g.cmds[i+1:]...)
			return c, true
		}
	}
	return wire.Command{}, false
}

// endGatheringLater ends the window of the connection now up once it has
// lasted g.window.
func (a *Agent) endGatheringLater() {
	gen := a.gather.current()
	time.AfterFunc(a.gather.window, func() { a.startGathered(gen) })
}

// startGathered starts the commands of window gen, oldest first.
func (a *Agent) startGathered(gen uint64) {
	cmds, ok := a.gather.end(gen)
	if !ok {
		return
	}
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].IssuedAt.Before(cmds[j].IssuedAt) })
	for _, cmd := range cmds {
		a.start(cmd)
	}
}
