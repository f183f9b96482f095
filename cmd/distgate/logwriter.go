package main

import (
	"errors"
	"io"
	"sync/atomic"
	"syscall"
)

// logWriter is where the log lines go: stderr, which the gates must never
// die of. A line that cannot be written (the reader of the pipe went away:
// EPIPE; stderr closed) is dropped and counted by drop, and the write
// reports success so that zerolog does not try stderr again. SIGPIPE is
// ignored for run (main), so a broken pipe is an error here and not the end
// of the process.
type logWriter struct {
	w      io.Writer
	drop   func()      // counts one dropped line
	broken atomic.Bool // EPIPE seen: a pipe never heals, so skip the syscall
}

func newLogWriter(w io.Writer, drop func()) *logWriter { return &logWriter{w: w, drop: drop} }

// Write writes one line (zerolog writes each event with one call).
func (lw *logWriter) Write(p []byte) (int, error) {
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
