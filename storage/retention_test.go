package storage

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// allKeys lists every key in the store with its value.
func allKeys(t *testing.T, s *Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().KeyCopy(nil))] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkConsistent proves nothing dangles: every index entry and fire key
// names a stored job, every job has both index entries, and no key mentions
// a deleted job.
func checkConsistent(t *testing.T, s *Store, deleted []string) {
	t.Helper()
	keys := allKeys(t, s)
	jobs := map[string]Job{}
	for k, v := range keys {
		if id, ok := strings.CutPrefix(k, jobPrefix); ok {
			var j Job
			if err := decode(v, &j); err != nil {
				t.Fatal(err)
			}
			jobs[id] = j
		}
	}
	for k, v := range keys {
		switch {
		case strings.HasPrefix(k, jobIdxHostPrefix), strings.HasPrefix(k, jobIdxAllPrefix):
			id := k[strings.LastIndexByte(k, '/')+1:]
			if _, ok := jobs[id]; !ok {
				t.Errorf("index entry %s names no stored job", k)
			}
		case strings.HasPrefix(k, fireJobPrefix):
			if _, ok := jobs[string(v)]; !ok {
				t.Errorf("fire key %s names job %s, which is not stored", k, v)
			}
		}
		for _, id := range deleted {
			if strings.Contains(k, id) || strings.Contains(string(v), id) {
				t.Errorf("key %s still refers to deleted job %s", k, id)
			}
		}
	}
	for id, j := range jobs {
		perHost, global := jobIndexKeys(j)
		if _, ok := keys[string(perHost)]; !ok {
			t.Errorf("job %s has no per-host index entry", id)
		}
		if _, ok := keys[string(global)]; !ok {
			t.Errorf("job %s has no global index entry", id)
		}
	}
}

func ids(jobs []Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	slices.Sort(out)
	return out
}

func TestRetentionDeletesOldJobsAndKeepsWhatIsReferenced(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().UTC()
	day := 24 * time.Hour
	old := now.Add(-200 * day)
	p := DefaultRetention()

	for _, h := range []string{"h1", "h2"} {
		if err := s.CreateHost(Host{ID: h, CreatedAt: old}); err != nil {
			t.Fatal(err)
		}
	}
	type tc struct {
		j    Job
		keep bool
	}
	n := 0
	mk := func(host, status string, created, ended time.Time, sched bool) Job {
		n++
		j := Job{ID: fmt.Sprintf("job-%03d", n), HostID: host, RepoID: "r1", Kind: "backup", Status: status,
			CreatedAt: created, EndedAt: ended, StderrTail: "warning: something", Output: []byte(`{"lines":["x"]}`),
			Summary: []byte(`{"files_new":1}`), Progress: &Progress{Seq: 3, Percent: 50}}
		if sched {
			j.ScheduleID, j.ScheduledAt = "nightly", created.Truncate(time.Minute).Add(time.Duration(n)*time.Minute)
			got, created, err := s.CreateScheduledJob(j, j.ScheduledAt)
			if err != nil || !created {
				t.Fatalf("scheduled job: %v %v", err, created)
			}
			return got
		}
		if err := s.CreateJob(j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	ended := old.Add(time.Hour)
	cases := []tc{
		{mk("h1", JobSucceeded, old, ended, true), false},
		{mk("h1", JobFailed, old, ended, false), false},
		{mk("h2", JobPartial, old, ended, true), false},
		{mk("h2", JobCancelled, old, time.Time{}, false), false}, // never started: ages from creation
		{mk("h2", JobExpired, old, ended, true), false},
		{mk("h1", JobRunning, old, time.Time{}, true), true},        // not terminal
		{mk("h2", JobQueued, old, time.Time{}, false), true},        // not terminal
		{mk("h1", JobSucceeded, old, now.Add(-10*day), true), true}, // ran long, ended recently
		{mk("h1", JobSucceeded, now.Add(-10*day), now.Add(-10*day), true), true},
		{mk("h2", JobFailed, now.Add(-179*day), now.Add(-179*day), false), true},
	}
	// Pins: the dashboard and repository page link to these.
	pinJob := func(host string, set func(h *Host, lb *LastBackup)) Job {
		j := mk(host, JobSucceeded, old.Add(-time.Duration(n)*time.Minute), ended, false)
		if _, err := s.UpdateHost(host, func(h *Host) error {
			set(h, &LastBackup{JobID: j.ID, Status: j.Status, EndedAt: j.EndedAt})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return j
	}
	cases = append(cases,
		tc{pinJob("h1", func(h *Host, lb *LastBackup) { h.LastJob = lb }), true},
		tc{pinJob("h2", func(h *Host, lb *LastBackup) { h.LastBackup = lb }), true},
		tc{pinJob("h2", func(h *Host, lb *LastBackup) { h.LastSuccess = lb }), true},
	)
	checkJob := mk("h1", JobSucceeded, old, ended, false)
	cases = append(cases, tc{checkJob, true})
	if _, err := s.CreateRepo(Repo{ID: "r1", Name: "r1"}, RepoSecrets{URL: "/tmp/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateRepo("r1", func(r *Repo) error {
		r.Health = &RepoHealth{LastCheck: &CheckMark{At: ended, OK: true, JobID: checkJob.ID}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Audit and alerts.
	for i, at := range []time.Time{now.Add(-400 * day), now.Add(-366 * day), now.Add(-300 * day), now} {
		if err := s.AppendAudit(AuditEntry{At: at, Actor: fmt.Sprintf("a%d", i), Action: "POST /x"}); err != nil {
			t.Fatal(err)
		}
	}
	alerts := map[string]Alert{
		"gone":     {State: AlertResolved, Since: old, ResolvedAt: now.Add(-100 * day)},
		"silenced": {State: AlertResolved, Since: old, ResolvedAt: now.Add(-100 * day), SilencedUntil: now.Add(day)},
		"recent":   {State: AlertResolved, Since: old, ResolvedAt: now.Add(-10 * day)},
		"firing":   {State: AlertFiring, Since: old},
	}
	for id, a := range alerts {
		if _, err := s.UpdateAlert(id, func(x *Alert, _ bool) error { *x = a; return nil }); err != nil {
			t.Fatal(err)
		}
	}

	var want, gone []string
	for _, c := range cases {
		if c.keep {
			want = append(want, c.j.ID)
		} else {
			gone = append(gone, c.j.ID)
		}
	}
	slices.Sort(want)

	// An old index entry whose record is missing is dropped too.
	orphan := []byte(jobIdxAllPrefix + idxTime(old) + "/job-orphan")
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(orphan, nil) }); err != nil {
		t.Fatal(err)
	}

	st, err := s.ApplyRetention(context.Background(), p, now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Jobs != len(gone) || st.Audit != 2 || st.Alerts != 1 {
		t.Fatalf("deleted %d jobs, %d audit entries, %d alerts; want %d, 2, 1 (%+v)", st.Jobs, st.Audit, st.Alerts, len(gone), st)
	}
	// 3 keys per job, the fire keys of the 3 scheduled ones, the orphan
	// index entry, 2 audit entries, 1 alert.
	if wantKeys := 3*len(gone) + 3 + 1 + 2 + 1; st.Keys != wantKeys {
		t.Errorf("deleted %d keys, want %d", st.Keys, wantKeys)
	}
	for _, id := range gone {
		if _, err := s.GetJob(id); err == nil {
			t.Errorf("job %s survived", id)
		}
	}
	checkConsistent(t, s, append(gone, "job-orphan"))

	// The listings agree with what is stored: globally, per host, paged.
	if got := ids(listAll(t, s, JobQuery{Limit: 3})); !slices.Equal(got, want) {
		t.Errorf("global listing %v, want %v", got, want)
	}
	var perHost []Job
	for _, h := range []string{"h1", "h2"} {
		perHost = append(perHost, listAll(t, s, JobQuery{HostID: h, Limit: 2})...)
	}
	if got := ids(perHost); !slices.Equal(got, want) {
		t.Errorf("per-host listings %v, want %v", got, want)
	}
	audit, _, err := s.ListAudit(AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 2 || audit[0].Actor != "a3" || audit[1].Actor != "a2" {
		t.Errorf("audit after retention: %+v", audit)
	}
	all, err := s.ListAlerts(true)
	if err != nil {
		t.Fatal(err)
	}
	var alertIDs []string
	for _, a := range all {
		alertIDs = append(alertIDs, a.ID)
	}
	slices.Sort(alertIDs)
	if !slices.Equal(alertIDs, []string{"firing", "recent", "silenced"}) {
		t.Errorf("alerts after retention: %v", alertIDs)
	}

	// A fire delivered again after its job was purged is not a duplicate
	// of anything stored, and a still-stored one is still deduplicated.
	kept := cases[8].j
	if _, created, err := s.CreateScheduledJob(Job{ID: "job-dup", HostID: kept.HostID, ScheduleID: kept.ScheduleID, Status: JobQueued}, kept.ScheduledAt); err != nil || created {
		t.Errorf("fire of a kept job made a new job (created=%v, err=%v)", created, err)
	}

	// A second run finds nothing to do.
	before := allKeys(t, s)
	st2, err := s.ApplyRetention(context.Background(), p, now)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Jobs != 0 || st2.Keys != 0 || st2.Audit != 0 || st2.Alerts != 0 {
		t.Errorf("second run deleted something: %+v", st2)
	}
	if st2.Kept != st.Kept || st.Kept != 7 {
		t.Errorf("kept %d then %d old jobs, want 7 (2 not terminal, 4 pinned, 1 ended recently)", st.Kept, st2.Kept)
	}
	if after := allKeys(t, s); len(after) != len(before) {
		t.Errorf("second run changed the key count: %d -> %d", len(before), len(after))
	}
}

// TestRetentionLargePurgeInBatchesWithConcurrentWriters purges thousands of
// jobs (many transactions) while other goroutines create and update jobs,
// as ingest does: no writer fails, no new job is touched, and the
// compaction that follows actually shrinks the store.
func TestRetentionLargePurgeInBatchesWithConcurrentWriters(t *testing.T) {
	s, dir := openTest(t)
	now := time.Now().UTC()
	const n = 6000
	t0 := time.Now()
	fillJobs(t, s, n, 20, now, 360*24*time.Hour)
	t.Logf("fill %s", time.Since(t0))
	// Settle as a store that has run a while: the tables leave level 0
	// (Badger does not compact a tree that is all in level 0, which only
	// a store of a few tens of MiB is).
	s = reopen(t, s, dir)
	// The newest job of each host is its last job.
	for h := range 20 {
		if err := s.CreateHost(Host{ID: fmt.Sprintf("host-%d", h)}); err != nil {
			t.Fatal(err)
		}
	}
	total := len(listAll(t, s, JobQuery{Limit: maxJobPage}))
	if total != n {
		t.Fatalf("filled %d jobs, listed %d", n, total)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var werr error
	var mu sync.Mutex
	var created []string
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				j := Job{ID: fmt.Sprintf("new-%d-%d", w, i), HostID: "host-1", Status: JobRunning, CreatedAt: time.Now().UTC()}
				err := s.CreateJob(j)
				if err == nil {
					_, err = s.UpdateJob(j.ID, func(j *Job) error { j.Status = JobSucceeded; j.EndedAt = time.Now().UTC(); return nil })
				}
				mu.Lock()
				if err != nil && werr == nil {
					werr = err
				}
				created = append(created, j.ID)
				mu.Unlock()
			}
		}()
	}
	t0 = time.Now()
	st, err := s.ApplyRetention(context.Background(), DefaultRetention(), now)
	cancel()
	t.Logf("purge %s", time.Since(t0))
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatalf("a concurrent writer failed: %v", werr)
	}
	if st.Batches < n/2/retentionBatch || st.Jobs < n/2-5 || st.Jobs > n/2+5 {
		t.Fatalf("purge of half of %d jobs: %+v", n, st)
	}
	for _, id := range created {
		if _, err := s.GetJob(id); err != nil {
			t.Errorf("job %s written during the purge: %v", id, err)
		}
	}
	checkConsistent(t, s, nil)
	if got := len(listAll(t, s, JobQuery{Limit: maxJobPage})); got != n-st.Jobs+len(created) {
		t.Errorf("listed %d jobs after the purge, want %d", got, n-st.Jobs+len(created))
	}

	// Reclaiming: the purge asked for a compaction; it runs once the
	// tombstones are in a table. Closing flushes them; GC then shrinks the
	// tables by about the share of data deleted.
	s2 := reopen(t, s, dir)
	if !s2.flushedPast(1) {
		t.Fatal("no table holds the purge after a restart")
	}
	before := s2.Size()
	if err := s2.collectGarbage(true); err != nil {
		t.Fatal(err)
	}
	after := s2.Size()
	t.Logf("LSM size %d -> %d bytes after purging %d of %d jobs", before, after, st.Jobs, n)
	if after > before*7/10 {
		t.Errorf("compaction left %d of %d bytes after deleting half the jobs", after, before)
	}
}

// Sessions and enrolment tokens that expired longer ago than the policy's
// grace are swept; those within it, and live ones, stay; a record that
// does not decode is left alone.
func TestRetentionSweepsExpiredSessionsAndEnrollTokens(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now().UTC()
	hash := func(i int) []byte {
		h := sha256.Sum256([]byte(fmt.Sprintf("token-%d", i)))
		return h[:]
	}
	sessions := []struct {
		expires time.Time
		swept   bool
	}{
		{now.Add(-48 * time.Hour), true},
		{time.Time{}, true}, // no expiry counts as expired
		{now.Add(-time.Hour), false},
		{now.Add(time.Hour), false},
	}
	for i, c := range sessions {
		if err := s.PutSession(hash(i), Session{User: "u", CreatedAt: now.Add(-72 * time.Hour), ExpiresAt: c.expires}); err != nil {
			t.Fatal(err)
		}
	}
	tokens := []struct {
		expires time.Time
		swept   bool
	}{
		{now.Add(-8 * 24 * time.Hour), true},
		{now.Add(-24 * time.Hour), false},
		{now.Add(24 * time.Hour), false},
	}
	for i, c := range tokens {
		if err := s.PutEnrollToken(hash(100+i), EnrollToken{HostID: "h1", CreatedAt: now.Add(-9 * 24 * time.Hour), ExpiresAt: c.expires}); err != nil {
			t.Fatal(err)
		}
	}
	garbage := []byte(sessPrefix + strings.Repeat("ab", 32))
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(garbage, []byte("not json")) }); err != nil {
		t.Fatal(err)
	}

	st, err := s.ApplyRetention(context.Background(), DefaultRetention(), now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sessions != 2 || st.EnrollTokens != 1 {
		t.Errorf("swept %d sessions and %d enrolment tokens, want 2 and 1", st.Sessions, st.EnrollTokens)
	}
	keys := allKeys(t, s)
	for i, c := range sessions {
		k, _ := hashKey(sessPrefix, hash(i))
		if _, ok := keys[string(k)]; ok == c.swept {
			t.Errorf("session %d (expires %v): stored %v, want swept %v", i, c.expires, ok, c.swept)
		}
	}
	for i, c := range tokens {
		k, _ := hashKey(enrollPrefix, hash(100+i))
		if _, ok := keys[string(k)]; ok == c.swept {
			t.Errorf("enrolment token %d (expires %v): stored %v, want swept %v", i, c.expires, ok, c.swept)
		}
	}
	if _, ok := keys[string(garbage)]; !ok {
		t.Error("a session record that does not decode was deleted")
	}
	if _, err := s.GetSession(hash(3), now); err != nil {
		t.Errorf("the live session: %v", err)
	}
	st2, err := s.ApplyRetention(context.Background(), DefaultRetention(), now)
	if err != nil || st2.Sessions != 0 || st2.EnrollTokens != 0 {
		t.Errorf("second run: %+v %v, want nothing swept", st2, err)
	}
}
