package test

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/distgate/distgate/internal/testenv"
)

// tempConfig writes a configuration given as text, well-formed or not (what
// `check` and `run` are tested on), and returns its path.
func tempConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "distgate.toml")
	if err := testenv.WriteFile(p, []byte(content)); err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	cliGateA = "[[gate]]\nname = \"a\"\nlisten = \"127.0.0.1:9100\"\nupstream = \"127.0.0.2:9100\"\n"
	cliGateB = "[[gate]]\nname = \"b\"\nlisten = \"127.0.0.1:9200\"\nupstream = \"127.0.0.2:9200\"\n"
	cliAllow = "  [[gate.allow]]\n  sources = [\"127.0.0.1/32\"]\n"
)

// `check` exits 2 on a bad file and names the key and the value.
func TestCheckRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, config string
		want         []string // all in stderr
	}{
		{"unknown key", cliGateA + "bogus = 1\n" + cliAllow, []string{`unknown key "gate.bogus"`}},
		{"unknown nested key", cliGateA + cliAllow + "  bogus2 = 3\n", []string{`unknown key "gate.allow.bogus2"`}},
		{"bad CIDR", cliGateA + "  [[gate.allow]]\n  sources = [\"10.0.0.300/8\"]\n",
			[]string{`gate "a"`, "allow[0].sources[0]", `"10.0.0.300/8"`}},
		{"bad duration", cliGateA + "handshake_timeout = \"3 seconds\"\n" + cliAllow,
			[]string{"handshake_timeout", `"3 seconds"`}},
		{"bad glob", cliGateA + cliAllow + "  names = [\"rpc-[abc\"]\n",
			[]string{`gate "a"`, "allow[0].names[0]", `"rpc-[abc"`}},
		{"duplicate gate names", cliGateA + cliAllow + strings.Replace(cliGateB, `"b"`, `"a"`, 1) + cliAllow,
			[]string{"name", `"a"`, "two gates"}},
		{"duplicate listen", cliGateA + cliAllow + strings.Replace(cliGateB, "127.0.0.1:9200", "127.0.0.1:9100", 1) + cliAllow,
			[]string{`gate "b"`, "listen", `"127.0.0.1:9100"`}},
		{"no allow entry", cliGateA, []string{`gate "a"`, "allow"}},
		{"rate 0", cliGateA + "rate = 0.0\n" + cliAllow, []string{`gate "a"`, "rate: 0"}},
		{"burst -1", cliGateA + "burst = -1\n" + cliAllow, []string{`gate "a"`, "burst: -1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", tempConfig(t, tc.config))
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %s:\n%s", w, stderr)
				}
			}
			if stdout != "" {
				t.Errorf("a rejected file printed a configuration:\n%s", stdout)
			}
		})
	}
}

// `check` passes the example file and the embedded default.
func TestCheckAccepts(t *testing.T) {
	t.Parallel()
	t.Run("embedded default", func(t *testing.T) {
		stdout, stderr, code := testenv.RunDistgate(t, nil, "check")
		if code != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
		}
		c := decodeCheck(t, stdout)
		if len(c.Gate) != 1 || c.Gate[0].Listen != "0.0.0.0:9100" || c.Gate[0].Upstream != "127.0.0.1:9101" ||
			c.Gate[0].RequireFlags != "otp25" || len(c.Gate[0].Allow) != 1 ||
			!slices.Equal(c.Gate[0].Allow[0].Sources, []string{"127.0.0.0/8", "::1/128"}) || len(c.Gate[0].Allow[0].Names) != 0 {
			t.Errorf("embedded default:\n%s", stdout)
		}
	})
	t.Run("config.example.toml", func(t *testing.T) {
		path, err := filepath.Abs(filepath.Join("..", "config.example.toml"))
		if err != nil {
			t.Fatal(err)
		}
		if _, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", path); code != 0 {
			t.Errorf("exit code %d; stderr:\n%s", code, stderr)
		}
	})
}

// `run` exits 2 on a bad configuration and 1 when a listen address is taken.
func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	t.Run("bad config", func(t *testing.T) {
		t.Parallel()
		_, stderr, code := testenv.RunDistgate(t, nil, "run", "-config", tempConfig(t, cliGateA+"rate = -1.0\n"+cliAllow))
		if code != 2 || !strings.Contains(stderr, "rate: -1") {
			t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
		}
	})
	t.Run("listen address taken", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		taken := ln.Addr().String()
		config := "[[gate]]\nname = \"busy\"\nlisten = \"" + taken + "\"\nupstream = \"127.0.0.2:9100\"\n" + cliAllow
		_, stderr, code := testenv.RunDistgate(t, nil, "run", "-config", tempConfig(t, config))
		if code != 1 || !strings.Contains(stderr, `gate "busy"`) || !strings.Contains(stderr, taken) {
			t.Errorf("exit code %d, want 1 naming the gate and %s; stderr:\n%s", code, taken, stderr)
		}
		if strings.Contains(stderr, `"listening"`) {
			t.Errorf("distgate said it was listening:\n%s", stderr)
		}
	})
}

// checkOutput is the part of `check`'s effective configuration the tests
// look at.
type checkOutput struct {
	Log struct {
		Level  string `toml:"level"`
		Format string `toml:"format"`
	} `toml:"log"`
	Gate []struct {
		Name         string `toml:"name"`
		Listen       string `toml:"listen"`
		Upstream     string `toml:"upstream"`
		RequireFlags string `toml:"require_flags"`
		Allow        []struct {
			Sources []string `toml:"sources"`
			Names   []string `toml:"names"`
		} `toml:"allow"`
	} `toml:"gate"`
}

func decodeCheck(t *testing.T, out string) checkOutput {
	t.Helper()
	var c checkOutput
	if _, err := toml.Decode(out, &c); err != nil {
		t.Fatalf("check printed something that is not TOML: %v\n%s", err, out)
	}
	return c
}

// The DISTGATE_* variables, as `check` shows their effect.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	oneGate := cliGateA + cliAllow + "  [[gate.allow]]\n  sources = [\"127.0.0.3/32\"]\n  names = [\"x@*\"]\n"
	gateVars := []string{
		"DISTGATE_LISTEN=127.0.0.1:9300",
		"DISTGATE_UPSTREAM=127.0.0.2:9300",
		"DISTGATE_ALLOW_SOURCES=10.1.0.0/16, 192.0.2.7",
		"DISTGATE_ALLOW_NAMES=rpc-*-app@*,rem-*-app@*",
	}
	checkGate := func(t *testing.T, c checkOutput, name string) {
		t.Helper()
		if len(c.Gate) != 1 {
			t.Fatalf("%d gates, want 1", len(c.Gate))
		}
		g := c.Gate[0]
		if g.Name != name || g.Listen != "127.0.0.1:9300" || g.Upstream != "127.0.0.2:9300" {
			t.Errorf("gate %q listen %q upstream %q; want %q, 127.0.0.1:9300, 127.0.0.2:9300", g.Name, g.Listen, g.Upstream, name)
		}
		if len(g.Allow) != 1 {
			t.Fatalf("%d allow entries, want the one from the environment", len(g.Allow))
		}
		if !slices.Equal(g.Allow[0].Sources, []string{"10.1.0.0/16", "192.0.2.7"}) {
			t.Errorf("sources %q", g.Allow[0].Sources)
		}
		if !slices.Equal(g.Allow[0].Names, []string{"rpc-*-app@*", "rem-*-app@*"}) {
			t.Errorf("names %q", g.Allow[0].Names)
		}
	}

	t.Run("replace the file's gate", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := testenv.RunDistgate(t, gateVars, "check", "-config", tempConfig(t, oneGate))
		if code != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
		}
		checkGate(t, decodeCheck(t, stdout), "a")
	})
	t.Run("replace the default gate, file from DISTGATE_CONFIG", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := testenv.RunDistgate(t, gateVars, "check")
		if code != 0 {
			t.Fatalf("embedded default: exit code %d; stderr:\n%s", code, stderr)
		}
		checkGate(t, decodeCheck(t, stdout), "default")

		env := append([]string{"DISTGATE_CONFIG=" + tempConfig(t, oneGate)}, gateVars...)
		stdout, stderr, code = testenv.RunDistgate(t, env, "check")
		if code != 0 {
			t.Fatalf("DISTGATE_CONFIG: exit code %d; stderr:\n%s", code, stderr)
		}
		checkGate(t, decodeCheck(t, stdout), "a")
	})
	t.Run("two gates", func(t *testing.T) {
		t.Parallel()
		two := tempConfig(t, cliGateA+cliAllow+cliGateB+cliAllow)
		for _, v := range gateVars {
			stdout, stderr, code := testenv.RunDistgate(t, []string{v}, "check", "-config", two)
			k, _, _ := strings.Cut(v, "=")
			if code != 2 || !strings.Contains(stderr, k) {
				t.Errorf("%s with two gates: exit code %d, want 2 naming %s; stderr:\n%s", k, code, k, stderr)
			}
			if stdout != "" {
				t.Errorf("%s with two gates printed a configuration", k)
			}
		}
		// The same file is fine without them.
		if _, stderr, code := testenv.RunDistgate(t, nil, "check", "-config", two); code != 0 {
			t.Errorf("two gates, no variables: exit code %d; stderr:\n%s", code, stderr)
		}
	})
	t.Run("log", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := testenv.RunDistgate(t, []string{"DISTGATE_LOG_LEVEL=debug", "DISTGATE_LOG_FORMAT=console"},
			"check", "-config", tempConfig(t, oneGate))
		if code != 0 {
			t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
		}
		if c := decodeCheck(t, stdout); c.Log.Level != "debug" || c.Log.Format != "console" {
			t.Errorf("log level %q format %q, want debug console", c.Log.Level, c.Log.Format)
		}
		for _, bad := range []string{"DISTGATE_LOG_LEVEL=loud", "DISTGATE_LOG_FORMAT=xml"} {
			_, stderr, code := testenv.RunDistgate(t, []string{bad}, "check", "-config", tempConfig(t, oneGate))
			_, v, _ := strings.Cut(bad, "=")
			if code != 2 || !strings.Contains(stderr, `"`+v+`"`) {
				t.Errorf("%s: exit code %d, want 2 naming %q; stderr:\n%s", bad, code, v, stderr)
			}
		}
	})
}
