// End-to-end tests of the admin socket (distgate status, ban, unban) and
// of bans kept across a restart in the state file, with real OTP 25 nodes
// and clients.

package test

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distgate/distgate/admin"
	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
	"github.com/distgate/distgate/wire"
)

// startAdminGate starts a node on a port p of its own and, in front of it,
// the app gate "w" admitting 127.0.0.0/8, with its admin socket and state
// file in a temporary directory, a rate that never limits the few
// connections of a test, and 127.0.0.4 in ban.never.
func startAdminGate(t *testing.T) (p int, f *config.File, g *testenv.Gate) {
	t.Helper()
	p = testenv.AppPort(t)
	testenv.StartNode(t, testenv.App(p))
	dir := t.TempDir()
	f = testenv.AppGate("w", p, testenv.Allow([]string{"127.0.0.0/8"}))
	f.Admin.Socket = filepath.Join(dir, "admin.sock")
	f.StateFile = filepath.Join(dir, "state.json")
	f.Gate[0].Rate, f.Gate[0].Burst = testenv.Ptr(100.0), testenv.Ptr(100)
	f.Gate[0].Ban = config.Ban{After: testenv.Ptr(5), Never: []string{"127.0.0.4/32"}}
	return p, f, testenv.StartGate(t, f)
}

// distgateCLI runs `distgate ARGS... -socket SOCK` and returns its
// stdout, stderr and exit code.
func distgateCLI(t *testing.T, sock string, args ...string) (string, string, int) {
	t.Helper()
	return testenv.RunDistgate(t, nil, append(args, "-socket", sock)...)
}

// adminStatus runs `distgate status -json` and decodes it.
func adminStatus(t *testing.T, sock string) admin.Status {
	t.Helper()
	out, errOut, code := distgateCLI(t, sock, "status", "-json")
	var st admin.Status
	if code != 0 {
		t.Fatalf("status -json: exit %d\n%s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Gates) != 1 {
		t.Fatalf("status -json: %v, %d gates:\n%s", err, len(st.Gates), out)
	}
	return st
}

// failFive sends the scanner's first message from src five times: five
// failures (missing_flags), which ban src on a gate with ban.after 5.
func failFive(t *testing.T, g *testenv.Gate, src string, p int) {
	t.Helper()
	for range 5 {
		c := testenv.Dial(t, src, testenv.Addr(testenv.GateIP, p))
		if _, err := c.Write(wire.ScannerProbe); err != nil {
			t.Fatal(err)
		}
		_, _, _ = testenv.ReadToEnd(c, testenv.WaitTimeout)
	}
	if b := g.Wait(testenv.Msg("banned")); b.Str("remote") != src {
		t.Fatalf("banned line %v, want remote %s", b, src)
	}
}

// A source banned for its failures is refused; `distgate unban` lets it in
// again at once, and a second unban says it was not banned, exit 0.
func TestAdminUnban(t *testing.T) {
	t.Parallel()
	p, f, g := startAdminGate(t)
	sock := f.Admin.Socket
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket: %v, %v; want a socket, mode 0600", err, fi)
	}

	failFive(t, g, "127.0.0.3", p)
	me := testenv.Client("me@127.0.0.1", p).Bind("127.0.0.3")
	// (Its denial line is sampled away: the five failures used up the
	// source's lines for this period.)
	if r := pingWith(t, me); r != "pang" {
		t.Fatalf("banned source: ping = %s, want pang", r)
	}

	out, errOut, code := distgateCLI(t, sock, "unban", "127.0.0.3")
	if code != 0 || out != "gate \"w\": unbanned 127.0.0.3/32\n" {
		t.Errorf("unban: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if u := g.Wait(testenv.Msg("unbanned")); u.Str("remote") != "127.0.0.3" {
		t.Errorf("unbanned line %v", u)
	}
	if r := pingWith(t, me); r != "pong" {
		t.Errorf("after unban: ping = %s, want pong", r)
	}
	g.Wait(testenv.Msg("handshake"), testenv.NodeIs("me@127.0.0.1"), testenv.Field("outcome", "ok"))
	out, _, code = distgateCLI(t, sock, "unban", "127.0.0.3")
	if code != 0 || out != "gate \"w\": 127.0.0.3 was not banned\n" {
		t.Errorf("second unban: exit %d, stdout %q", code, out)
	}
}

// `distgate ban` closes the source's live session (closed reason=banned)
// and `status -json` shows the session before and the ban after; a ban of a
// ban.never source is refused with exit 1.
func TestAdminBanLiveSession(t *testing.T) {
	t.Parallel()
	p, f, g := startAdminGate(t)
	sock := f.Admin.Socket

	sh := testenv.StartShell(t, testenv.Client("live@127.0.0.1", p).Bind("127.0.0.3"))
	if r := sh.Do("ping"); r != "pong" {
		t.Fatalf("ping = %s", r)
	}
	if r := sh.Do("monitor"); r != "true" {
		t.Fatalf("monitor_node = %s", r)
	}
	st := adminStatus(t, sock)
	gs := st.Gates[0]
	if gs.Name != "w" || gs.Listen != testenv.Addr(testenv.GateIP, p) || gs.Forward != "user" || gs.TLS != "off" || len(gs.Bans) != 0 {
		t.Errorf("status gate = %+v", gs)
	}
	if len(gs.Connections) != 1 {
		t.Fatalf("status connections = %+v, want the live session", gs.Connections)
	}
	c := gs.Connections[0]
	if c.Remote.Addr() != netip.MustParseAddr("127.0.0.3") || c.Node != "live@127.0.0.1" || c.Outcome != "ok" || c.Path != "user" || c.BytesIn == 0 || c.BytesOut == 0 {
		t.Errorf("status connection = %+v, want the live session from 127.0.0.3, outcome ok, bytes both ways", c)
	}

	out, errOut, code := distgateCLI(t, sock, "ban", "127.0.0.3")
	if code != 0 || !strings.HasPrefix(out, "gate \"w\": banned 127.0.0.3/32 until ") {
		t.Errorf("ban: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if cl := g.Wait(testenv.Msg("closed"), testenv.NodeIs("live@127.0.0.1")); cl.Str("reason") != "banned" {
		t.Errorf("closed line %v, want reason banned", cl)
	}
	if b := g.Wait(testenv.Msg("banned")); b.Str("remote") != "127.0.0.3" || b.Num("failures") != 0 {
		t.Errorf("banned line %v, want remote 127.0.0.3 and failures 0", b)
	}
	if r := sh.Do("wait_down"); r != "nodedown" {
		t.Errorf("the banned session: %s, want nodedown", r)
	}
	gs = adminStatus(t, sock).Gates[0]
	if len(gs.Connections) != 0 || len(gs.Bans) != 1 || gs.Bans[0].Source != netip.MustParsePrefix("127.0.0.3/32") ||
		gs.Bans[0].Failures != 0 || gs.Bans[0].Level != 1 || gs.BanTable.Active != 1 {
		t.Errorf("status after the ban: connections %+v, bans %+v, table %+v", gs.Connections, gs.Bans, gs.BanTable)
	}

	out, errOut, code = distgateCLI(t, sock, "ban", "127.0.0.4")
	if code != 1 || out != "" || !strings.Contains(errOut, "ban.never") {
		t.Errorf("ban of a never source: exit %d, stdout %q, stderr %q; want 1 and a refusal", code, out, errOut)
	}
	if n := g.Count(testenv.Msg("banned")); n != 1 {
		t.Errorf("%d banned lines, want 1", n)
	}
}

// A ban survives a restart with state_file: the restarted distgate refuses
// the source at accept, and status shows the ban with its level.
func TestAdminBanSurvivesRestart(t *testing.T) {
	t.Parallel()
	p, f, g := startAdminGate(t)
	failFive(t, g, "127.0.0.3", p)
	before := adminStatus(t, f.Admin.Socket).Gates[0].Bans
	if code := g.Shutdown(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if fi, err := os.Stat(f.StateFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v; want mode 0600", err, fi)
	}
	if _, err := os.Lstat(f.Admin.Socket); !os.IsNotExist(err) {
		t.Errorf("the admin socket is left after a clean exit: %v", err)
	}

	g = testenv.StartGate(t, f)
	if l := g.Wait(testenv.Msg("bans restored")); l.Num("bans") != 1 || l.Str("gate") != "w" {
		t.Errorf("bans restored line %v", l)
	}
	after := adminStatus(t, f.Admin.Socket).Gates[0].Bans
	if len(before) != 1 || len(after) != 1 || !after[0].Until.Equal(before[0].Until) || after[0].Level != 1 || after[0].Failures != 5 {
		t.Errorf("bans before the restart %+v, after %+v; want the same ban", before, after)
	}
	if r := pingWith(t, testenv.Client("back@127.0.0.1", p).Bind("127.0.0.3")); r != "pang" {
		t.Errorf("banned source after a restart: ping = %s, want pang", r)
	}
	if d := g.Wait(testenv.Msg("denied"), testenv.From("127.0.0.3")); d.Str("reason") != "banned" || d.Str("node") != "" {
		t.Errorf("denied line %v, want reason banned and nothing read", d)
	}
	if r := pingWith(t, testenv.Client("other@127.0.0.1", p)); r != "pong" {
		t.Errorf("another source after the restart: ping = %s, want pong", r)
	}
}
