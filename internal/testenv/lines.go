package testenv

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Lines collects a process's output as lines for tests and programs to wait
// on. It is safe for concurrent use; waiters are woken on every write.
type Lines struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{}
}

// NewLines returns an empty Lines.
func NewLines() *Lines { return &Lines{changed: make(chan struct{})} }

// Write appends output; complete lines become visible to Snapshot.
func (b *Lines) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			break
		}
		b.lines = append(b.lines, string(b.partial[:i]))
		b.partial = b.partial[i+1:]
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// Snapshot returns the complete lines so far and a channel closed at the
// next write.
func (b *Lines) Snapshot() ([]string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lines[:len(b.lines):len(b.lines)], b.changed
}

// All returns the complete lines so far.
func (b *Lines) All() []string { l, _ := b.Snapshot(); return l }

// String returns everything written, the incomplete last line included.
func (b *Lines) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(b.lines, "\n")
	if len(b.partial) > 0 {
		s += "\n" + string(b.partial)
	}
	return s
}

// Tail returns the last n complete lines, for error messages.
func (b *Lines) Tail(n int) string {
	l := b.All()
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// WaitLines waits until check accepts the lines of b and returns what it
// returned. It gives up when timeout passes or when done closes (the writer
// exited) and check still refuses the last lines; the error then says
// what was awaited and holds the output so far.
func WaitLines[T any](b *Lines, done <-chan struct{}, what string, timeout time.Duration, check func([]string) (T, bool)) (T, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	exited := false
	for {
		lines, changed := b.Snapshot()
		if v, ok := check(lines); ok {
			return v, nil
		}
		if exited {
			var zero T
			return zero, fmt.Errorf("waiting for %s: the process exited; its output:\n%s", what, b)
		}
		select {
		case <-changed:
		case <-done:
			exited = true // look once more: the last lines may have come with the exit
		case <-deadline.C:
			var zero T
			return zero, fmt.Errorf("waiting for %s: nothing after %v; output so far:\n%s", what, timeout, b)
		}
	}
}

// Has reports whether ls holds the line s.
func Has(ls []string, s string) bool { return slices.Contains(ls, s) }
