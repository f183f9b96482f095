package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// snapshots counts and times the Writer's calls of its snapshot func: one
// per write.
type snapshots struct {
	mu    sync.Mutex
	state State
	times []time.Time
	calls chan struct{}
}

func newSnapshots(s State) *snapshots {
	return &snapshots{state: s, calls: make(chan struct{}, 1000)}
}

func (s *snapshots) get() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.times = append(s.times, time.Now())
	s.calls <- struct{}{}
	return s.state
}

func (s *snapshots) set(st State) {
	s.mu.Lock()
	s.state = st
	s.mu.Unlock()
}

func (s *snapshots) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.times)
}

func (s *snapshots) waitCall(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-s.calls:
	case <-time.After(within):
		t.Fatalf("no write within %v", within)
	}
}

// TestWriterCoalesces: a burst of 100 changes costs one or two writes, the
// first within a second, and the file ends up holding the latest state.
func TestWriterCoalesces(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	snap := newSnapshots(State{})
	w := NewWriter(p, snap.get, func(err error) { t.Errorf("write: %v", err) })
	defer w.Close()

	start := time.Now()
	for i := range 100 {
		if i == 99 {
			snap.set(sample())
		}
		w.Changed()
	}
	snap.waitCall(t, 2*time.Second)
	first := time.Since(start)
	// Anything else the burst causes comes within the next interval.
	time.Sleep(writeInterval + 500*time.Millisecond)
	if n := snap.count(); n < 1 || n > 2 {
		t.Fatalf("100 changes made %d writes, want 1 or 2", n)
	}
	t.Logf("first write %v after the burst; %d writes", first, snap.count())
	if first > time.Second+200*time.Millisecond {
		t.Errorf("first write came %v after the change, want within a second", first)
	}
	got, err := Load(p, 2, t0)
	if err != nil {
		t.Fatal(err)
	}
	equalState(t, got, sample())
}

// TestWriterRate: changes that keep coming are written at most once a
// second, and still written.
func TestWriterRate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	snap := newSnapshots(sample())
	w := NewWriter(p, snap.get, func(err error) { t.Errorf("write: %v", err) })
	deadline := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(deadline) {
		w.Changed()
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	snap.mu.Lock()
	times := snap.times
	snap.mu.Unlock()
	// 2.5 s of changes: writes near 0.1, 1.1, 2.1 s, and the one Close
	// makes for what changed after the last.
	if len(times) < 2 || len(times) > 4 {
		t.Fatalf("%d writes in 2.5 s of changes, want 2 to 4", len(times))
	}
	// Between background writes at least the interval passes (the last may
	// be Close's, which does not wait).
	for i := 1; i < len(times)-1; i++ {
		if gap := times[i].Sub(times[i-1]); gap < writeInterval-50*time.Millisecond {
			t.Errorf("writes %d and %d only %v apart", i-1, i, gap)
		}
	}
}

// TestWriterCloseWrites: a change just before Close is written by Close,
// at once; a Close with nothing changed writes nothing.
func TestWriterCloseWrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	snap := newSnapshots(sample())
	w := NewWriter(p, snap.get, nil)
	w.Changed()
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second/2 {
		t.Errorf("Close took %v", d)
	}
	if n := snap.count(); n != 1 {
		t.Fatalf("%d writes, want 1", n)
	}
	if _, err := Load(p, 2, t0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	w.Changed() // after Close: nothing happens, nothing panics

	q := filepath.Join(t.TempDir(), "state.json")
	snap2 := newSnapshots(sample())
	w2 := NewWriter(q, snap2.get, nil)
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	if n := snap2.count(); n != 0 {
		t.Fatalf("Close with no change made %d writes", n)
	}
	if _, err := os.Stat(q); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close with no change created the file: %v", err)
	}
}

// TestWriterErrors: a failing write is reported, retried after a pause (not
// in a loop), and Close returns the error.
func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "missing", "state.json")
	errs := make(chan error, 10)
	snap := newSnapshots(sample())
	w := NewWriter(p, snap.get, func(err error) { errs <- err })
	w.Changed()
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name the file", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no error reported")
	}
	// The retry comes after at least twice the interval.
	select {
	case err := <-errs:
		t.Fatalf("retried at once: %v", err)
	case <-time.After(writeInterval + 500*time.Millisecond):
	}
	// Once the directory exists, the retry succeeds.
	if err := os.Mkdir(filepath.Join(dir, "missing"), 0o700); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(p); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the retry never wrote the file")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close after a successful retry: %v", err)
	}

	// A write that still fails at Close is returned by Close.
	w2 := NewWriter(filepath.Join(dir, "gone", "state.json"), snap.get, nil)
	w2.Changed()
	if err := w2.Close(); err == nil {
		t.Fatal("Close returned no error for a write that cannot succeed")
	}
}
