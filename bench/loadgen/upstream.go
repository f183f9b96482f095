package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/distgate/distgate/wire"
)

// The upstream speaks a tiny protocol that starts like Erlang distribution:
// the client sends a genuine first handshake message ('N'), the upstream
// answers with the status frame "sok" (what a node answers), and then the
// client sends one command: a byte and a big-endian uint64 argument.
const (
	cmdEcho   = 'E' // echo every byte back until EOF
	cmdSink   = 'S' // read arg bytes, then write the count (8 bytes)
	cmdSource = 'O' // write arg bytes, then half-close
)

// statusOK is the recv_status frame a node sends after a good send_name.
var statusOK = []byte{0, 3, 's', 'o', 'k'}

var bigBufs = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

func cmdUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "upstream listening on %s\n", ln.Addr())
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and the like under the memory test: back off, go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go serveUpstream(c.(*net.TCPConn))
	}
}

func serveUpstream(c *net.TCPConn) {
	defer c.Close()
	var hb [wire.MaxFrame]byte
	if _, err := io.ReadFull(c, hb[:2]); err != nil {
		return
	}
	n, err := wire.CheckLength([2]byte{hb[0], hb[1]})
	if err != nil {
		return
	}
	if _, err := io.ReadFull(c, hb[2:2+n]); err != nil {
		return
	}
	if _, err := wire.Parse(hb[:2+n]); err != nil {
		return
	}
	if _, err := c.Write(statusOK); err != nil {
		return
	}
	var cmd [9]byte
	if _, err := io.ReadFull(c, cmd[:]); err != nil {
		return // the setup-rate and idle clients close here
	}
	arg := binary.BigEndian.Uint64(cmd[1:])
	switch cmd[0] {
	case cmdEcho:
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	case cmdSink:
		bp := bigBufs.Get().(*[]byte)
		defer bigBufs.Put(bp)
		buf := *bp
		var got uint64
		for got < arg {
			n, err := c.Read(buf)
			got += uint64(n)
			if err != nil {
				break
			}
		}
		var ack [8]byte
		binary.BigEndian.PutUint64(ack[:], got)
		_, _ = c.Write(ack[:])
		_, _ = io.Copy(io.Discard, c) // until the client closes
	case cmdSource:
		bp := bigBufs.Get().(*[]byte)
		defer bigBufs.Put(bp)
		buf := *bp
		for left := arg; left > 0; {
			n := uint64(len(buf))
			if left < n {
				n = left
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
			left -= n
		}
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	}
}
