package agent

import (
	"sort"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/wire"
)

// recover turns the journal into actions after a restart: a job that was
// running when the agent died is reported failed; a job accepted but not
// started is started now.
func (a *Agent) recover() error {
	entries, err := a.jr.all(time.Now())
	if err != nil {
		return err
	}
	// In the order the console issued them (arrival order can differ; see
	// Agent.gathered).
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
	a.mu.Lock()
	refused := a.refused[cmd.JobID]
	a.mu.Unlock()
	if refused {
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
		a.mu.Lock()
		a.refused[cmd.JobID] = true
		a.mu.Unlock()
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
	if !a.gather(cmd) {
		a.start(cmd)
	}
	return true, nil
}

// gatherWindow is how long after a connection is up commands are gathered
// before they start (see Agent.gathered).
const gatherWindow = 750 * time.Millisecond

// gather keeps cmd for startGathered when it arrived inside the window.
func (a *Agent) gather(cmd wire.Command) bool {
	a.gatherMu.Lock()
	defer a.gatherMu.Unlock()
	if !a.gatherOpen {
		return false
	}
	a.gathered = append(a.gathered, cmd)
	return true
}

// startGathered starts the gathered commands oldest first. Journaled as
// received, they are not lost if the agent stops first: recover starts
// them on the next run.
func (a *Agent) startGathered(gen uint64) {
	a.gatherMu.Lock()
	if gen != a.gatherGen {
		// A later connection attempt owns the window (and these commands).
		a.gatherMu.Unlock()
		return
	}
	cmds := a.gathered
	a.gathered = nil
	a.gatherOpen = false
	a.gatherMu.Unlock()
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].IssuedAt.Before(cmds[j].IssuedAt) })
	for _, cmd := range cmds {
		a.start(cmd)
	}
}

// takeGathered removes a gathered command (to start it for a cancel).
func (a *Agent) takeGathered(jobID string) (wire.Command, bool) {
	a.gatherMu.Lock()
	defer a.gatherMu.Unlock()
	for i, c := range a.gathered {
		if c.JobID == jobID {
			a.gathered = append(a.gathered[:i], a.gathered[i+1:]...)
			return c, true
		}
	}
	return wire.Command{}, false
}
