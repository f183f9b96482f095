package proxy

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/distgate/distgate/policy"
)

// TestCopyGetsRawTCPConns makes sure nothing wraps the connections handed to
// io.Copy: only two raw *net.TCPConns let it splice. It runs alone because
// it sets the package's copyHook.
func TestCopyGetsRawTCPConns(t *testing.T) {
	type call struct {
		dst, src   any
		dstT, srcT string
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	copyHook = func(dst, src any) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call{dst, src, fmt.Sprintf("%T", dst), fmt.Sprintf("%T", src)})
	}
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	t.Cleanup(func() {
		_ = h.stop() // no gate goroutine is left to read the hook
		copyHook = nil
	})
	c, u := admit(t, h, up, "127.0.0.2", "a@h")
	write(t, u, []byte("sok"))
	expect(t, c, []byte("sok"))
	_ = c.Close()
	_ = u.Close()
	h.log.waitFor(t, "closed", from(c))

	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("io.Copy called %d times, want 2 (one per direction)", len(calls))
	}
	for _, c := range calls {
		if c.dstT != "*net.TCPConn" || c.srcT != "*net.TCPConn" {
			t.Errorf("io.Copy(%s, %s), want io.Copy(*net.TCPConn, *net.TCPConn)", c.dstT, c.srcT)
		}
	}
	if calls[0].dst != calls[1].src || calls[0].src != calls[1].dst || calls[0].dst == calls[0].src {
		t.Errorf("the two copies are not the two directions between the same two conns")
	}
}

// TestSpliceBypassesUserSpace moves 64 MiB through a gate and watches this
// process's rchar/wchar in /proc/self/io. The test's own client writes the
// bytes once and its fake node reads them once; splice(2) is not counted in
// rchar/wchar (checked on Linux 6.18), so with splice each grows by about
// 64 MiB, and with a user-space copy by about twice that. It runs alone so
// that no other test's I/O is counted.
func TestSpliceBypassesUserSpace(t *testing.T) {
	const size = 64 << 20
	up := newUpstream(t, "127.0.0.1:0")
	h := startGate(t, up.addr(), settings(rules(policy.RequireOTP25, allow(t, []string{"127.0.0.2"}))))
	c, u := admit(t, h, up, "127.0.0.2", "a@h")
	deadline := time.Now().Add(60 * time.Second)
	_ = c.SetDeadline(deadline)
	_ = u.SetDeadline(deadline)

	before := procIO(t)
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(buf) {
			if _, err := c.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	var got int64
	buf := make([]byte, 64<<10)
	for {
		n, err := u.Read(buf) // plain read(2), never a splice
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("upstream read after %d bytes: %v", got, err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatalf("client write: %v", err)
	}
	after := procIO(t)
	if got != size {
		t.Fatalf("upstream got %d bytes, want %d", got, size)
	}
	rchar, wchar := after["rchar"]-before["rchar"], after["wchar"]-before["wchar"]
	t.Logf("moving %d MiB: rchar +%d (%.2f×), wchar +%d (%.2f×), syscr +%d, syscw +%d",
		size>>20, rchar, float64(rchar)/size, wchar, float64(wchar)/size,
		after["syscr"]-before["syscr"], after["syscw"]-before["syscw"])
	if rchar < size || wchar < size {
		t.Fatalf("rchar/wchar grew by %d/%d, less than the %d the test itself moved: /proc/self/io does not count as expected", rchar, wchar, size)
	}
	if rchar >= size*3/2 || wchar >= size*3/2 {
		t.Errorf("rchar/wchar grew by %.2f×/%.2f× the bytes moved, want < 1.5×: the gate copied through user space instead of splicing",
			float64(rchar)/size, float64(wchar)/size)
	}
	_ = u.Close()
	e := h.log.waitFor(t, "closed", from(c))
	if e.num("bytes_in") != int64(len(hello(t, "a@h")))+size {
		t.Errorf("bytes_in = %d, want %d", e.num("bytes_in"), int64(len(hello(t, "a@h")))+size)
	}
}
