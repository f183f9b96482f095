package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "distgate.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodGate = `
[[gate]]
name = "g"
listen = "127.0.0.1:9100"
upstream = "127.0.0.2:9100"
[[gate.allow]]
sources = ["127.0.0.1"]
`

func TestLoadDefaults(t *testing.T) {
	l, err := Load("", nil)
	if err != nil {
		t.Fatalf("embedded default: %v", err)
	}
	if len(l.Gates) != 1 || l.Gates[0].Listen != "0.0.0.0:9100" || l.Gates[0].Upstream != "127.0.0.1:9101" {
		t.Fatalf("embedded default gate: %+v", l.Gates)
	}
	s := l.Gates[0].Settings
	if s.HandshakeTimeout != 3*time.Second || s.DialTimeout != 2*time.Second || s.MaxConns != 256 ||
		s.MaxConnsPerSource != 8 || s.Rate != 2 || s.Burst != 20 || s.Reset || s.DrainTimeout != 10*time.Second {
		t.Errorf("defaults: %+v", s)
	}
	if s.Rules.Require.String() != "otp25" {
		t.Errorf("require_flags default %v", s.Rules.Require)
	}
	if s.LogLevel != zerolog.InfoLevel {
		t.Errorf("log.level default compiles to %v, want info", s.LogLevel)
	}
	if len(l.Warnings) != 0 {
		t.Errorf("the default must not warn: %v", l.Warnings)
	}
}

func TestExampleConfigPasses(t *testing.T) {
	if _, err := Load("../config.example.toml", nil); err != nil {
		t.Fatal(err)
	}
}

// Every bad config names the key and the value.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"unknown key", goodGate + "bogus = 1\n", []string{`unknown key`, `gate.allow.bogus`}},
		{"unknown top key", "bogus = 1\n" + goodGate, []string{`"bogus"`}},
		{"bad cidr", strings.Replace(goodGate, `"127.0.0.1"`, `"10.0.0.300/8"`, 1), []string{`gate "g": allow[0].sources[0]: "10.0.0.300/8" is not a CIDR`}},
		{"host bits", strings.Replace(goodGate, `"127.0.0.1"`, `"10.0.0.5/8"`, 1), []string{`"10.0.0.5/8" has host bits set`}},
		{"bad duration", goodGate[:strings.Index(goodGate, "[[gate.allow]]")] + "handshake_timeout = \"3\"\n[[gate.allow]]\nsources=[\"127.0.0.1\"]\n", []string{`handshake_timeout`, `"3" is not a duration`}},
		{"zero duration", strings.Replace(goodGate, "[[gate.allow]]", "dial_timeout = \"0s\"\n[[gate.allow]]", 1), []string{`dial_timeout: "0s" must be positive`}},
		{"bad glob", goodGate + "names = [\"a[b\"]\n", []string{`allow[0].names[0]: bad glob "a[b"`}},
		{"duplicate name", goodGate + strings.Replace(goodGate, "127.0.0.1:9100", "127.0.0.1:9101", 1), []string{`name: "g" is used by two gates`}},
		{"duplicate listen", goodGate + strings.Replace(goodGate, `name = "g"`, `name = "h"`, 1), []string{`listen: "127.0.0.1:9100" is also the listen address of gate "g"`}},
		{"no allow", goodGate[:strings.Index(goodGate, "[[gate.allow]]")], []string{`gate "g": allow: no [[gate.allow]] entry`}},
		{"no gate", "drain_timeout = \"1s\"\n", []string{`no [[gate]]`}},
		{"rate zero", strings.Replace(goodGate, "[[gate.allow]]", "rate = 0.0\n[[gate.allow]]", 1), []string{`rate: 0 is out of range`}},
		{"burst negative", strings.Replace(goodGate, "[[gate.allow]]", "burst = -1\n[[gate.allow]]", 1), []string{`burst: -1 is out of range`}},
		{"on_deny", strings.Replace(goodGate, "[[gate.allow]]", "on_deny = \"drop\"\n[[gate.allow]]", 1), []string{`on_deny: "drop" is not one of close, reset`}},
		{"require_flags", strings.Replace(goodGate, "[[gate.allow]]", "require_flags = \"otp24\"\n[[gate.allow]]", 1), []string{`require_flags: "otp24" is not one of`}},
		{"bad listen", strings.Replace(goodGate, "127.0.0.1:9100", "localhost", 1), []string{`listen: "localhost" is not an address:port`}},
		{"log level", "[log]\nlevel = \"loud\"\n" + goodGate, []string{`log.level: "loud"`}},
		{"metrics listen", "[metrics]\nlisten = \"9568\"\n" + goodGate, []string{`metrics.listen: "9568"`}},
		{"empty sources", goodGate + "[[gate.allow]]\nnames=[\"a@b\"]\n", []string{`allow[1].sources: must list`}},
		// A gate's name is printed as it is, never read as a format.
		{"name with verbs", strings.Replace(strings.Replace(goodGate, `name = "g"`, `name = "a%db%s%%"`, 1), "[[gate.allow]]", "rate = 0.0\n[[gate.allow]]", 1),
			[]string{`gate[0].name: "a%db%s%%" is not 1 to 64 of A-Z a-z 0-9 _ . -`, `gate[0]: rate: 0 is out of range`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.text), nil)
			if err == nil {
				t.Fatal("load accepted a bad config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	text := strings.Replace(goodGate, `"127.0.0.1"]`, `"0.0.0.0/0"]`, 1)
	text = strings.Replace(text, "127.0.0.2:9100", "10.1.2.3:9100", 1)
	l, err := Load(writeConfig(t, text), nil)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(l.Warnings, "\n")
	for _, w := range []string{`"0.0.0.0/0" admits every IPv4 source`, `upstream: "10.1.2.3:9100" is not a loopback address`} {
		if !strings.Contains(all, w) {
			t.Errorf("warnings %q lack %q", all, w)
		}
	}
}

func TestEnvironment(t *testing.T) {
	env := []string{
		"DISTGATE_LISTEN=127.0.0.1:9200", "DISTGATE_UPSTREAM=127.0.0.2:9200",
		"DISTGATE_ALLOW_SOURCES=127.0.0.3, ::1", "DISTGATE_ALLOW_NAMES=rpc-*-app@*,rem-*-app@*",
		"DISTGATE_LOG_LEVEL=warn", "DISTGATE_LOG_FORMAT=console", "DISTGATE_METRICS_LISTEN=127.0.0.1:9568",
	}
	l, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	g := l.Gates[0]
	if g.Listen != "127.0.0.1:9200" || g.Upstream != "127.0.0.2:9200" {
		t.Errorf("listen/upstream %q %q", g.Listen, g.Upstream)
	}
	al := g.Settings.Rules.Allow
	if len(al) != 1 || len(al[0].Sources) != 2 || al[0].Sources[0].String() != "127.0.0.3/32" ||
		al[0].Sources[1].String() != "::1/128" || len(al[0].Names) != 2 || al[0].Names[1].String() != "rem-*-app@*" {
		t.Errorf("allow from env: %+v", al)
	}
	if l.Log.Level != "warn" || l.Log.Format != "console" || l.Metrics.Listen != "127.0.0.1:9568" {
		t.Errorf("log/metrics from env: %+v %+v", l.Log, l.Metrics)
	}
	// The level reaches the gate through its settings, which a reload
	// replaces: that is how a new level reaches a running gate's logger.
	if g.Settings.LogLevel != zerolog.WarnLevel {
		t.Errorf("gate settings' log level %v, want warn", g.Settings.LogLevel)
	}

	// DISTGATE_CONFIG picks the file; a flag wins over it.
	p := writeConfig(t, goodGate)
	if l, err := Load("", []string{"DISTGATE_CONFIG=" + p}); err != nil || l.Source != p {
		t.Errorf("DISTGATE_CONFIG: %v, source %q", err, l.Source)
	}
	if _, err := Load(p, []string{"DISTGATE_CONFIG=/nonexistent"}); err != nil {
		t.Errorf("flag must win over DISTGATE_CONFIG: %v", err)
	}

	// With two gates the per-gate variables are an error.
	two := goodGate + strings.Replace(strings.Replace(goodGate, `name = "g"`, `name = "h"`, 1), "127.0.0.1:9100", "127.0.0.1:9101", 1)
	_, err = Load(writeConfig(t, two), []string{"DISTGATE_LISTEN=127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "at most one gate") {
		t.Errorf("two gates + DISTGATE_LISTEN: %v", err)
	}
	if _, err := Load("", []string{"DISTGATE_ALLOW_SOURCES=nonsense"}); err == nil || !strings.Contains(err.Error(), `"nonsense" is not a CIDR`) {
		t.Errorf("bad DISTGATE_ALLOW_SOURCES: %v", err)
	}
}
