package storage

import (
	"errors"
	"testing"
)

func TestCheck(t *testing.T) {
	s, _ := openTest(t)
	if err := s.Check(); err != nil {
		t.Fatalf("fresh store: %v", err)
	}
	// A failed sync is sticky: nothing written since can be called durable.
	s.durable.mu.Lock()
	s.durable.err = errors.New("fsync: input/output error")
	s.durable.mu.Unlock()
	if err := s.Check(); err == nil {
		t.Error("a store whose sync failed reported healthy")
	}
	s.durable.mu.Lock()
	s.durable.err = nil
	s.durable.mu.Unlock()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); !errors.Is(err, ErrClosed) {
		t.Errorf("closed store: %v, want ErrClosed", err)
	}
}
