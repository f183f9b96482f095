package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"syscall"
	"time"
)

const (
	// DefaultTimeout bounds a whole request: connect, ask, read the answer.
	DefaultTimeout = 10 * time.Second
	// maxResponse bounds what the client reads: a status lists every ban,
	// up to 65 536 a gate at about 130 bytes each.
	maxResponse = 256 << 20
)

// Client talks to a daemon's admin socket. The zero Timeout means
// DefaultTimeout.
type Client struct {
	Socket  string
	Timeout time.Duration
}

// UnreachableError is returned when the daemon could not be asked at all.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	hint := ""
	switch {
	case errors.Is(e.Err, fs.ErrNotExist), errors.Is(e.Err, syscall.ECONNREFUSED):
		hint = " (is distgate running, with [admin] socket set to this path?)"
	case errors.Is(e.Err, fs.ErrPermission):
		hint = " (the socket is mode 0600: run this as the user distgate runs as, or as root)"
	}
	return fmt.Sprintf("cannot reach distgate at %q: %v%s", e.Socket, e.Err, hint)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// DaemonError is an error the daemon answered with.
type DaemonError struct{ Msg string }

func (e *DaemonError) Error() string { return "distgate refused: " + e.Msg }

// Status asks for the daemon's status.
func (c Client) Status(ctx context.Context) (*Status, error) {
	r, err := c.roundTrip(ctx, request{Op: "status"})
	if err != nil {
		return nil, err
	}
	if r.Status == nil {
		return nil, errors.New("distgate answered without a status")
	}
	return r.Status, nil
}

// Ban asks the daemon to ban addr on gate ("" for every gate) for d (0:
// each gate's ban.duration).
func (c Client) Ban(ctx context.Context, gate string, addr netip.Addr, d time.Duration) ([]BanResult, error) {
	req := request{Op: "ban", Gate: gate, Address: addr.String()}
	if d != 0 {
		req.For = d.String()
	}
	return c.results(ctx, req)
}

// Unban asks the daemon to lift addr's ban on gate ("" for every gate).
func (c Client) Unban(ctx context.Context, gate string, addr netip.Addr) ([]BanResult, error) {
	return c.results(ctx, request{Op: "unban", Gate: gate, Address: addr.String()})
}

func (c Client) results(ctx context.Context, req request) ([]BanResult, error) {
	r, err := c.roundTrip(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(r.Results) == 0 {
		return nil, errors.New("distgate answered without a result")
	}
	return r.Results, nil
}

func (c Client) roundTrip(ctx context.Context, req request) (*response, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := dial(ctx, c.Socket)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err // "dial unix PATH:" would repeat the path
		}
		return nil, &UnreachableError{Socket: c.Socket, Err: err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	// A server that refuses this client answers before reading the request
	// and closes, so the write may fail with EPIPE while the answer that
	// says why is already waiting: read it either way.
	werr := json.NewEncoder(conn).Encode(req)
	var r response
	if err := json.NewDecoder(io.LimitReader(conn, maxResponse)).Decode(&r); err != nil {
		if werr != nil {
			return nil, fmt.Errorf("send the request to %q: %w", c.Socket, werr)
		}
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("distgate at %q closed the connection without an answer", c.Socket)
		}
		return nil, fmt.Errorf("read the answer from %q: %w", c.Socket, err)
	}
	if r.Error != "" {
		return nil, &DaemonError{Msg: r.Error}
	}
	return &r, nil
}

// dial connects to the socket. A Unix socket whose listen backlog is full
// refuses at once with EAGAIN instead of queueing the connect as TCP
// does, so a burst of commands (a script banning a list of addresses in
// parallel) retries until the timeout rather than failing.
func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	wait := 5 * time.Millisecond
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return conn, err
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}
