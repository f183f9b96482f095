package main

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/distgate/distgate/admin"
	"github.com/distgate/distgate/internal/state"
	"github.com/distgate/distgate/internal/testenv"
)

// startRun runs the configuration text in dir (admin socket dir/admin.sock,
// state file dir/state.json) until the returned stop is called, and waits
// until the admin socket answers.
func startRun(t *testing.T, dir, text string) (c admin.Client, out *testenv.Lines, stop func() error) {
	t.Helper()
	path := filepath.Join(dir, "distgate.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stop = goRun(t, path, nil)
	c = admin.Client{Socket: filepath.Join(dir, "admin.sock"), Timeout: 5 * time.Second}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := c.Status(context.Background()); err == nil {
			return c, out, stop
		} else if time.Now().After(deadline) {
			t.Fatalf("the admin socket does not answer: %v\n%s", err, out.String())
		}
	}
}

const adminTestConfig = `
drain_timeout = "0s"
state_file = "%DIR%/state.json"
[admin]
socket = "%DIR%/admin.sock"
[[gate]]
name = "a"
listen = "127.0.0.1:0"
upstream = "127.0.0.1:9"
  [gate.ban]
  never = ["127.0.0.7"]
  [[gate.allow]]
  sources = ["127.0.0.0/8"]
[[gate]]
name = "b"
listen = "127.0.0.2:0"
upstream = "127.0.0.1:9"
  [[gate.allow]]
  sources = ["127.0.0.0/8"]
`

// The admin socket answers from the running gates: status, ban on every
// gate (refused on the gate that never bans the source), unban, an unknown
// gate; every change reaches the state file within a second, and a restart
// restores the bans.
func TestRunAdminAndState(t *testing.T) {
	dir := t.TempDir()
	text := strings.ReplaceAll(adminTestConfig, "%DIR%", dir)
	c, out, stop := startRun(t, dir, text)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Gates) != 2 || st.Gates[0].Name != "a" || st.Gates[0].Forward != "user" || st.Gates[0].TLS != "off" ||
		strings.HasSuffix(st.Gates[0].Listen, ":0") || st.PID != os.Getpid() || st.Version == "" || !strings.HasSuffix(st.Config, "distgate.toml") {
		t.Errorf("status = %+v", st)
	}
	if fi, err := os.Stat(c.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin socket: %v, mode %v; want 0600", err, fi.Mode())
	}

	seven, nine := netip.MustParseAddr("127.0.0.7"), netip.MustParseAddr("203.0.113.9")
	rs, err := c.Ban(ctx, "", seven, 0)
	if err != nil || len(rs) != 2 || rs[0].Result != admin.ResultNever || rs[1].Result != admin.ResultBanned {
		t.Errorf("ban of a never source on every gate: %+v, %v; want never on a, banned on b", rs, err)
	}
	rs, err = c.Ban(ctx, "a", nine, time.Hour)
	if err != nil || len(rs) != 1 || rs[0].Result != admin.ResultBanned || rs[0].Ban == nil || time.Until(rs[0].Ban.Until) < 59*time.Minute {
		t.Errorf("ban -gate a -for 1h: %+v, %v", rs, err)
	}
	if rs, err = c.Ban(ctx, "nosuch", nine, 0); err != nil || rs[0].Result != admin.ResultUnknownGate {
		t.Errorf("ban on an unknown gate: %+v, %v", rs, err)
	}
	if rs, err = c.Unban(ctx, "", seven); err != nil || rs[0].Result != admin.ResultNotBanned || rs[1].Result != admin.ResultUnbanned {
		t.Errorf("unban on every gate: %+v, %v; want not_banned on a, unbanned on b", rs, err)
	}
	// The file follows within a second (and a bit, on a busy machine).
	var saved state.State
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		saved, err = state.Load(filepath.Join(dir, "state.json"), 2, time.Now())
		if err == nil && len(saved["a"]) == 1 && len(saved["b"]) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state file: %v, %v; want one ban on a", saved, err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(c.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the admin socket is still there after run returned: %v", err)
	}

	// A restart brings the ban back.
	c, out, stop = startRun(t, dir, text)
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bs := st.Gates[0].Bans; len(bs) != 1 || bs[0].Source != netip.MustParsePrefix("203.0.113.9/32") {
		t.Errorf("bans after a restart: %+v\n%s", bs, out.String())
	}
	if !strings.Contains(out.String(), `"message":"bans restored"`) {
		t.Errorf("no bans restored line:\n%s", out.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A state file that cannot be loaded: one warn line, no bans, and the
// file is left as it was (it may be another file, named by mistake).
func TestRunCorruptStateFile(t *testing.T) {
	dir := t.TempDir()
	junk := []byte("not a state file\n")
	if err := os.WriteFile(filepath.Join(dir, "state.json"), junk, 0o600); err != nil {
		t.Fatal(err)
	}
	c, out, stop := startRun(t, dir, strings.ReplaceAll(adminTestConfig, "%DIR%", dir))
	if _, err := c.Ban(context.Background(), "b", netip.MustParseAddr("203.0.113.9"), 0); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"level":"warn"`); n != 1 || !strings.Contains(out.String(), "state file ignored") {
		t.Errorf("%d warn lines, want one about the state file:\n%s", n, out.String())
	}
	if b, err := os.ReadFile(filepath.Join(dir, "state.json")); err != nil || !bytes.Equal(b, junk) {
		t.Errorf("the unreadable state file was changed: %q, %v", b, err)
	}
}
