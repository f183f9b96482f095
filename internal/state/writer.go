package state

import (
	"sync"
	"sync/atomic"
	"time"
)

// Writer timing (design.md, Bans: the file is written within a second of a
// change).
const (
	// writeInterval is the least time between two writes: a ban storm
	// costs one write a second, not one per ban.
	writeInterval = time.Second
	// settleDelay is how long a first change waits for the ones that come
	// with it (a ban, then the closing of that source's connections).
	settleDelay = 100 * time.Millisecond
	// maxRetry bounds the wait between attempts while writes fail (a full
	// or read-only disk), so the error is not reported every second.
	maxRetry = time.Minute
)

// Writer saves the state in the background after changes: within a second
// of a change, at most one write a second however many changes come, and
// once more on Close if anything changed since the last write. Each write
// takes a fresh snapshot, so it always writes the latest state. Methods are
// safe for concurrent use.
type Writer struct {
	path     string
	snapshot func() State
	onError  func(error)

	interval, settle time.Duration

	dirty     atomic.Bool
	kick      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	mu        sync.Mutex // serialises saves between the loop and Close
	lastErr   error
}

// NewWriter starts a Writer that saves snapshot() to path. snapshot is
// called from the Writer's goroutine and must be safe to call while bans
// change. onError, if not nil, is told of each failed write (the caller
// logs it); the Writer retries with a growing pause, up to a minute.
func NewWriter(path string, snapshot func() State, onError func(error)) *Writer {
	w := &Writer{
		path:     path,
		snapshot: snapshot,
		onError:  onError,
		interval: writeInterval,
		settle:   settleDelay,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go w.loop()
	return w
}

// Changed tells the Writer the state changed. It never blocks.
func (w *Writer) Changed() {
	w.dirty.Store(true)
	select {
	case w.kick <- struct{}{}:
	default: // a write is already due
	}
}

func (w *Writer) loop() {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var (
		last    time.Time // start of the last write
		pending bool      // timer armed for a write
		backoff = w.interval
	)
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
			if !pending {
				pending = true
				timer.Reset(max(w.settle, time.Until(last.Add(w.interval))))
			}
		case <-timer.C:
			pending = false
			last = time.Now()
			if err := w.save(); err != nil {
				// Keep the change and try again later, slower each time.
				backoff = min(2*backoff, maxRetry)
				pending = true
				timer.Reset(backoff)
			} else {
				backoff = w.interval
			}
		}
	}
}

// save writes the state if it changed since the last write.
func (w *Writer) save() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dirty.Swap(false) {
		return nil
	}
	err := Save(w.path, w.snapshot(), time.Now())
	w.lastErr = err
	if err != nil {
		w.dirty.Store(true)
		if w.onError != nil {
			w.onError(err)
		}
	}
	return err
}

// Close stops the Writer and, if the state changed since the last write,
// writes it once more. It returns that write's error, or the last
// background write's. Later calls return nil; Changed after Close does
// nothing.
func (w *Writer) Close() error {
	var err error
	w.closeOnce.Do(func() {
		close(w.stop)
		<-w.done
		if w.dirty.Load() {
			_ = w.save()
		}
		w.mu.Lock()
		err = w.lastErr
		w.mu.Unlock()
	})
	return err
}
