// Package logwriter is where distgate's log lines go: stderr, which the
// gates must never die of.
package logwriter

import (
	"errors"
	"io"
	"sync/atomic"
	"syscall"
)

// Writer writes log lines to w. A line that cannot be written (the reader
// of the pipe went away: EPIPE; stderr closed) is dropped and counted by
// drop, and the write reports success so that zerolog does not try stderr
// again. SIGPIPE is ignored for run (main), so a broken pipe is an error
// here and not the end of the process.
type Writer struct {
	w      io.Writer
	drop   func()      // counts one dropped line
	broken atomic.Bool // EPIPE seen: a pipe never heals, so skip the syscall
}

// New returns a Writer to w that calls drop for each line lost.
func New(w io.Writer, drop func()) *Writer { return &Writer{w: w, drop: drop} }

// Write writes one line (zerolog writes each event with one call).
func (lw *Writer) Write(p []byte) (int, error) {
	if !lw.broken.Load() {
		_, err := lw.w.Write(p)
		if err == nil {
			return len(p), nil
		}
		if errors.Is(err, syscall.EPIPE) {
			lw.broken.Store(true)
		}
	}
	lw.drop()
	return len(p), nil
}
