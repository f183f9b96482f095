package main

import (
	"github.com/distgate/distgate/config"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// TestDistgateTextKeys checks that the keys added as text land where
// distgate reads them: forward at the top level (not inside the last
// table) and [gate.tls] in the last gate, with the encoded file intact.
func TestDistgateTextKeys(t *testing.T) {
	f := tlsGateConfig("127.0.0.20:9100", "127.0.0.21:9100", "otp25")
	text, err := distgateText(f, "kernel", &config.TLS{Mode: "terminate", Cert: "/c.pem"})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Forward string `toml:"forward"`
		Log     struct {
			Level string `toml:"level"`
		} `toml:"log"`
		Gate []struct {
			Name  string `toml:"name"`
			Allow []struct {
				Sources []string `toml:"sources"`
			} `toml:"allow"`
			TLS struct {
				Mode string `toml:"mode"`
				Cert string `toml:"cert"`
			} `toml:"tls"`
		} `toml:"gate"`
	}
	if _, err := toml.Decode(text, &got); err != nil {
		t.Fatalf("%v in:\n%s", err, text)
	}
	if got.Forward != "kernel" || got.Log.Level != "warn" {
		t.Errorf("forward = %q, log.level = %q; want kernel, warn", got.Forward, got.Log.Level)
	}
	if len(got.Gate) != 1 || got.Gate[0].Name != "erlang-tls" || got.Gate[0].TLS.Mode != "terminate" ||
		got.Gate[0].TLS.Cert != "/c.pem" || len(got.Gate[0].Allow) != 1 {
		t.Errorf("gate = %+v; want erlang-tls with its allow entry and tls.mode terminate\n%s", got.Gate, text)
	}

	plainText, err := distgateText(distgateConfig(gateAddrs{listen: "a:1", upstream: "b:2"}, "warn", "close"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var plain config.File
	if _, err := toml.Decode(plainText, &plain); err != nil {
		t.Fatal(err)
	}
	if plain.Forward != "" || plain.Gate[0].TLS.Mode != "" {
		t.Errorf("the default variant's file sets forward or tls:\n%s", plainText)
	}
}

func TestProbeVerdict(t *testing.T) {
	for _, c := range []struct {
		name       string
		want       string
		pr         probe
		skip, note bool
	}{
		{"kernel reported", "kernel", probe{paths: []string{"kernel", "kernel"}}, false, true},
		{"fell back, reported", "kernel", probe{paths: []string{"user", "user"}, warns: []string{"forward: kernel path refused"}}, true, false},
		{"one gate fell back", "kernel", probe{paths: []string{"kernel", "user"}}, true, false},
		{"no path, warned", "kernel", probe{paths: []string{"", ""}, warns: []string{"kernel path: EPERM"}}, true, false},
		{"no path, silent", "kernel", probe{paths: []string{"", ""}}, false, true},
		{"user, no path", "user", probe{paths: []string{"", ""}}, false, false},
		{"user reported", "user", probe{paths: []string{"user", "user"}}, false, true},
	} {
		skip, note := c.pr.verdict(c.want)
		if (skip != "") != c.skip || (note != "") != c.note {
			t.Errorf("%s: skip %q, note %q; want skip %v, note %v", c.name, skip, note, c.skip, c.note)
		}
	}
}

func TestParseVariants(t *testing.T) {
	m, err := parseVariants(" user, kernel ,,tls")
	if err != nil || !m["user"] || !m["kernel"] || !m["tls"] || m["passthrough"] {
		t.Errorf("parseVariants = %v, %v", m, err)
	}
	if _, err := parseVariants("user,kernal"); err == nil || !strings.Contains(err.Error(), `"kernal"`) {
		t.Errorf("a misspelt variant: err = %v; want one naming it", err)
	}
}

// TestConfigsPassCheck loads every distgate configuration the bench writes
// through config.Load, the same checks `distgate check` runs, so that a
// new rule in the configuration cannot leave bench/run.sh refusing to
// start.
func TestConfigsPassCheck(t *testing.T) {
	dir := t.TempDir()
	files := map[string]*config.File{
		"plain":  distgateConfig(gateAddrs{listen: "127.0.0.1:9001", upstream: "127.0.0.2:9001", erlListen: "127.0.0.5:9002", erlUpstream: "127.0.0.6:9002"}, "warn", "close"),
		"reset":  distgateConfig(gateAddrs{listen: "127.0.0.1:9001", upstream: "127.0.0.2:9001"}, "info", "reset"),
		"tlsish": tlsGateConfig("127.0.0.20:9100", "127.0.0.21:9100", "otp25"),
	}
	for name, f := range files {
		for _, forward := range []string{"", "user", "kernel"} {
			text, err := distgateText(f, forward, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, name+forward+".toml")
			if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(p, nil); err != nil {
				t.Errorf("%s, forward %q: %v\n%s", name, forward, err, text)
			}
		}
	}
}
