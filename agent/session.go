package agent

import (
	"context"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/wire"
)

// sessionExpiry is how long the broker keeps this agent's session (and the
// commands queued for it) while the agent is away.
const sessionExpiry = 7 * 24 * time.Hour

func (a *Agent) onConnectionUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	a.log.Info("connected to broker", "session_present", ca.SessionPresent)
	a.gatherMu.Lock()
	gen := a.gatherGen
	a.gatherMu.Unlock()
	time.AfterFunc(gatherWindow, func() { a.startGathered(gen) })
	go func() {
		ctx, cancel := context.WithTimeout(a.jobsCtx, 10*time.Second)
		defer cancel()
		if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
			{Topic: wire.CommandsTopic(a.cfg.HostID), QoS: 1},
			{Topic: wire.SchedulesDesiredTopic(a.cfg.HostID), QoS: 1},
		}}); err != nil {
			a.log.Warn("subscribe failed", "error", err)
		}
		a.publishStatus(ctx, cm)
		a.sched.SetOnline(true)
	}()
	select {
	case a.out.notify <- struct{}{}:
	default:
	}
}

func (a *Agent) publishStatus(ctx context.Context, cm *autopaho.ConnectionManager) {
	hostname, _ := os.Hostname()
	a.mu.Lock()
	running := make([]string, 0, len(a.running))
	for id := range a.running {
		running = append(running, id)
	}
	resticVersion := a.restic
	a.mu.Unlock()
	sort.Strings(running)
	b, err := wire.Encode(&wire.Status{
		Online: true, AgentVersion: a.version, OS: runtime.GOOS, Arch: runtime.GOARCH,
		Hostname: hostname, ResticVersion: resticVersion, StartedAt: a.startedAt, RunningJobs: running,
	})
	if err != nil {
		a.log.Error("encode status", "error", err)
		return
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: wire.StatusTopic(a.cfg.HostID), Payload: b, QoS: 1, Retain: true}); err != nil {
		a.log.Warn("publish status failed", "error", err)
	}
}
