package test

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// unitSettings returns the unit's settings by section: section -> key ->
// values, in order.
func unitSettings(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("unit line %q", l)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// A crash is restarted; a configuration error is not retried forever.
// The Go runtime exits 2 on a fatal error and on SIGQUIT (shown here with
// the real binary), the same code as a configuration error, so the unit
// cannot tell them apart by exit code: it restarts on any failure, lets
// `distgate check` in ExecStartPre stop a bad configuration before run
// starts, and a start limit ends the retries. Checked offline; the unit is
// also verified by TestSystemdUnit.
func TestSystemdRestartsCrash(t *testing.T) {
	t.Parallel()
	unit, err := os.ReadFile("../deploy/systemd/distgate.service")
	if err != nil {
		t.Fatal(err)
	}
	s := unitSettings(t, string(unit))
	svc, u := s["Service"], s["Unit"]
	if r := svc["Restart"]; len(r) != 1 || (r[0] != "on-failure" && r[0] != "always") {
		t.Errorf("Restart=%v, want on-failure", r)
	}
	for _, v := range svc["RestartPreventExitStatus"] {
		for _, f := range strings.Fields(v) {
			if f == "2" {
				t.Errorf("RestartPreventExitStatus=%s: a crashed distgate (exit 2) would not be restarted", v)
			}
		}
	}
	for _, v := range svc["SuccessExitStatus"] {
		if slices.Contains(strings.Fields(v), "2") {
			t.Errorf("SuccessExitStatus=%s: a crash would count as success", v)
		}
	}
	if pre := svc["ExecStartPre"]; len(pre) != 1 || !strings.HasSuffix(pre[0], "distgate check -config /etc/distgate/distgate.toml") {
		t.Errorf("ExecStartPre=%v, want distgate check on the same file", pre)
	}
	burst, interval := u["StartLimitBurst"], u["StartLimitIntervalSec"]
	if len(burst) != 1 || len(interval) != 1 {
		t.Fatalf("[Unit] StartLimitBurst=%v StartLimitIntervalSec=%v: both needed, or a broken configuration is retried forever", burst, interval)
	}
	b, err1 := strconv.Atoi(burst[0])
	iv, err2 := time.ParseDuration(strings.TrimSuffix(interval[0], "s") + "s")
	rs, err3 := time.ParseDuration(svc["RestartSec"][0])
	if err1 != nil || err2 != nil || err3 != nil || b < 2 || time.Duration(b)*rs >= iv {
		t.Errorf("StartLimitBurst=%s within StartLimitIntervalSec=%s with RestartSec=%s: the limit must be reachable (burst × RestartSec < interval)",
			burst[0], interval[0], svc["RestartSec"])
	}
	// Replacing the file: the unit says how, next to the reload.
	if !regexp.MustCompile(`(?i)rename`).Match(unit) {
		t.Error("the unit does not say to replace the configuration atomically (write, then rename)")
	}

	// The premise: a Go crash (here SIGQUIT's dump) exits 2.
	g := testenv.StartGate(t, testenv.AppGate("e2e", testenv.AppPort(t), testenv.Allow([]string{"127.0.0.1"})))
	g.Send(syscall.SIGQUIT)
	if c := g.AwaitExit(); c != 2 {
		t.Errorf("exit %d after SIGQUIT, expected the Go runtime's 2", c)
	}
}
