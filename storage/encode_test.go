package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// The envelope is built by hand; it must stay byte for byte what
// json.Marshal of an envelope gives, and decode must read both that and
// envelopes written differently (other field order, spacing).
func TestEncodeMatchesEnvelopeMarshal(t *testing.T) {
	j := Job{ID: "job-1", HostID: "host-1", Status: JobRunning, Error: "<&> \"quoted\"",
		CreatedAt: time.Date(2026, 11, 27, 1, 2, 3, 4, time.UTC), Summary: json.RawMessage(`{"a": 1}`)}
	got, err := encode(j)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := json.Marshal(j)
	want, _ := json.Marshal(envelope{V: recordVersion, D: d})
	if !bytes.Equal(got, want) {
		t.Fatalf("encode:\n got %s\nwant %s", got, want)
	}
	for _, raw := range [][]byte{got, []byte(`{"d":` + string(d) + `,"v":1}`), []byte(` {"v": 1, "d": ` + string(d) + "}\n")} {
		var back Job
		if err := decode(raw, &back); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		if back.Error != j.Error || !back.CreatedAt.Equal(j.CreatedAt) || back.Status != j.Status {
			t.Fatalf("decode %s: got %+v", raw, back)
		}
	}
	var back Job
	if err := decode([]byte(`{"v":2,"d":{}}`), &back); err == nil {
		t.Fatal("version 2 decoded")
	}
}

// A read-modify-write that changes nothing writes nothing: the record's
// version in Badger stays the same.
func TestUpdateJobNoChangeDoesNotWrite(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateJob(Job{ID: "job-1", HostID: "host-1", Status: JobQueued}); err != nil {
		t.Fatal(err)
	}
	version := func() uint64 {
		txn := s.db.NewTransaction(false)
		defer txn.Discard()
		it, err := txn.Get(jobKey("job-1"))
		if err != nil {
			t.Fatal(err)
		}
		return it.Version()
	}
	v0 := version()
	j, err := s.UpdateJob("job-1", func(*Job) error { return nil })
	if err != nil || j.Status != JobQueued {
		t.Fatalf("no-op update: %+v, %v", j, err)
	}
	if v := version(); v != v0 {
		t.Fatalf("no-op update wrote the job (version %d → %d)", v0, v)
	}
	if _, err := s.UpdateJob("job-1", func(j *Job) error { j.Status = JobRunning; return nil }); err != nil {
		t.Fatal(err)
	}
	if v := version(); v == v0 {
		t.Fatal("a real change was not written")
	}
	if j, _ := s.GetJob("job-1"); j.Status != JobRunning {
		t.Fatalf("status %s", j.Status)
	}
}

// Concurrent updates, batched into shared transactions, lose none: each
// of many goroutines bumps several jobs, and every bump is in the record.
// A refused update in the same batch changes nothing and does not fail
// the others.
func TestUpdateJobConcurrentBatches(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const jobs, workers, rounds = 4, 40, 25
	for i := range jobs {
		if err := s.CreateJob(Job{ID: fmt.Sprintf("job-%d", i), HostID: "host-1", Status: JobRunning}); err != nil {
			t.Fatal(err)
		}
	}
	refused := errors.New("refused")
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*2)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				id := fmt.Sprintf("job-%d", (w+r)%jobs)
				if _, err := s.UpdateJob(id, func(j *Job) error {
					if j.Progress == nil {
						j.Progress = &Progress{}
					}
					j.Progress.Seq++
					return nil
				}); err != nil {
					errs <- err
				}
				if _, err := s.UpdateJob(id, func(*Job) error { return refused }); !errors.Is(err, refused) {
					errs <- fmt.Errorf("refused update: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var total int64
	for i := range jobs {
		j, err := s.GetJob(fmt.Sprintf("job-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		total += j.Progress.Seq
	}
	if total != workers*rounds {
		t.Fatalf("%d updates recorded, want %d", total, workers*rounds)
	}
	if _, err := s.UpdateJob("job-missing", func(*Job) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing job: %v", err)
	}
}
