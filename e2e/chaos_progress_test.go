package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/wire"
)

// progressWriteBehind is the console's (console/fleet: progressWriteBehind):
// a running job's progress reaches the store at most this late.
const progressWriteBehind = time.Second

// TestChaosProgressThroughKill (fault 9): jobs stream progress (5 a second
// each, every message acknowledged) when the server is killed with -9.
// After the restart, each job's stored progress is no older than the
// write-behind interval (plus the time one write round takes) at the kill,
// and every result sent afterwards arrives and ends its job.
func TestChaosProgressThroughKill(t *testing.T) {
	n := 20
	if chaosSize().name == "full" {
		n = 500
	}
	ft := &fault{t: t, row: chaosRow{Order: 9, Fault: fmt.Sprintf("kill -9 the server while %d jobs stream progress (written behind)", n)}, start: time.Now()}
	defer ft.finish()
	s := newServer(t, "--health-delay=10m", "--enroll-rate=-1")
	type streamer struct {
		host, pw, job string
		c             *mqttClient
		mu            sync.Mutex
		ackedAt       []time.Time // ackedAt[seq-1]: when seq's PUBACK came
	}
	ss := make([]*streamer, n)
	var hostIDs []string
	for i := range ss {
		cred, id := s.credential(fmt.Sprintf("stream-%03d", i))
		ss[i] = &streamer{host: id, pw: cred.Password}
		hostIDs = append(hostIDs, id)
	}
	repo := s.createRepo("stream", "rest:http://127.0.0.1:9/stream/", "unused-password", hostIDs...)
	for _, st := range ss {
		c, _, err := dialMQTT(t, s, st.host, st.host, st.pw, nil)
		if err != nil {
			t.Fatal(err)
		}
		st.c = c
		st.job = s.createJob(st.host, map[string]any{"kind": "backup", "repo_id": repo, "args": map[string]any{"paths": []string{"/data"}}})
	}

	// Stream until the kill: each client publishes its next progress when
	// the last one was acknowledged, 200 ms apart.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	started := time.Now().UTC()
	for _, st := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := int64(1); ; seq++ {
				b, _ := wire.Encode(&wire.Progress{JobID: st.job, Seq: seq, StartedAt: started, Percent: float64(seq % 100)})
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				pr, err := st.c.c.Publish(ctx, &paho.Publish{Topic: wire.ProgressTopic(st.host, st.job), Payload: b, QoS: 1})
				cancel()
				if err != nil || pr == nil || pr.ReasonCode != 0 {
					return // the server is gone
				}
				st.mu.Lock()
				st.ackedAt = append(st.ackedAt, time.Now())
				st.mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		}()
	}
	time.Sleep(3 * time.Second)
	killAt := time.Now()
	s.Proc.Kill()
	close(stop)
	wg.Wait()

	s2 := startServer(t, s.Data, s.HTTPAddr, s.MQTTAddr, "--health-delay=10m", "--enroll-rate=-1")
	// What the store kept: per job, how long before the kill its newest
	// stored progress was acknowledged … against the write-behind bound.
	bound := progressWriteBehind + 500*time.Millisecond
	var worst time.Duration
	for _, st := range ss {
		var j struct {
			Status   string `json:"status"`
			Progress *struct {
				Seq int64 `json:"seq"`
			} `json:"progress"`
		}
		s2.do("GET", "/api/v1/jobs/"+st.job, nil, &j, 200)
		stored := int64(0)
		if j.Progress != nil {
			stored = j.Progress.Seq
		}
		st.mu.Lock()
		acked := st.ackedAt
		st.mu.Unlock()
		if stored > int64(len(acked)) {
			ft.violation("job %s: stored progress %d beyond the last acknowledged %d", st.job, stored, len(acked))
			continue
		}
		if stored < int64(len(acked)) {
			// The first acknowledged progress the store lost.
			lost := killAt.Sub(acked[stored])
			worst = max(worst, lost)
			if lost > bound {
				ft.violation("job %s: progress acknowledged %v before the kill was lost (stored %d of %d)", st.job, lost.Round(time.Millisecond), stored, len(acked))
			}
		}
		if stored == 0 {
			ft.violation("job %s: no progress stored", st.job)
		}
	}
	ft.note("oldest acknowledged progress lost at the kill: %v before it (bound %v)", worst.Round(time.Millisecond), bound)

	// The agents come back and send their results: every one arrives.
	for _, st := range ss {
		c, _, err := dialMQTT(t, s2, st.host, st.host, st.pw, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := wire.Encode(&wire.Result{JobID: st.job, Status: wire.StatusSucceeded, StartedAt: started, EndedAt: time.Now().UTC(), ExitCode: 0})
		if code := c.publish(t, wire.ResultTopic(st.host, st.job), b, false); code != 0 {
			ft.violation("result of %s refused: %#x", st.job, code)
		}
	}
	states := map[string]int{}
	for _, st := range ss {
		states[s2.waitJob(st.job, time.Minute).Status]++
	}
	if states["succeeded"] != n {
		ft.violation("terminal states %v, want %d succeeded", states, n)
	}
	ft.row.Jobs, ft.row.States = n, fmt.Sprint(states)
	ft.row.Verdict = "ok"
	if ft.bad > 0 {
		t.Fail()
	}
}
