package logwriter

import (
	"os"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"
)

// A log line to a pipe whose reader is gone is dropped and counted, and the
// logger goes on; a writer that fails otherwise is counted too.
func TestLogWriterDrops(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var dropped atomic.Int64
	lw := New(w, func() { dropped.Add(1) })
	log := zerolog.New(lw)
	log.Info().Msg("read")
	buf := make([]byte, 256)
	if n, err := r.Read(buf); err != nil || n == 0 {
		t.Fatalf("first line: %d bytes, %v", n, err)
	}
	_ = r.Close()
	for range 3 {
		log.Info().Msg("lost")
	}
	if n := dropped.Load(); n != 3 {
		t.Errorf("%d lines counted as dropped, want 3", n)
	}
	if !lw.broken.Load() {
		t.Error("EPIPE did not mark the writer broken")
	}
	if n, err := lw.Write([]byte("x\n")); n != 2 || err != nil {
		t.Errorf("Write on a broken pipe: %d, %v; want 2, nil", n, err)
	}

	closed, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	_ = closed.Close()
	dropped.Store(0)
	lw = New(closed, func() { dropped.Add(1) })
	log = zerolog.New(lw)
	log.Info().Msg("to a closed file")
	if dropped.Load() != 1 {
		t.Errorf("a write to a closed file was not counted")
	}
}
