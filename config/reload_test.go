package config

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRestartRequired(t *testing.T) {
	// Paths of this test's own: the state file's is checked, and a fixed
	// one in /tmp may be anything on a shared machine.
	dir := t.TempDir()
	stateFile, adminSocket := filepath.Join(dir, "bans.state"), filepath.Join(dir, "admin.sock")
	base := func() *File {
		return &File{
			MaxHandshakes: ptr(128),
			Gate: []Gate{{
				Name: "a", Listen: "127.0.0.1:9100", Upstream: "127.0.0.2:9100",
				Allow: []Allow{{Sources: []string{"127.0.0.1"}}},
			}},
		}
	}
	compile := func(t *testing.T, f *File) *Config {
		t.Helper()
		text, err := f.Encode()
		if err != nil {
			t.Fatal(err)
		}
		c, err := Load(writeConfig(t, string(text)), nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name   string
		change func(*File)
		want   string // "" means the reload may apply
	}{
		{"nothing", func(*File) {}, ""},
		{"policy", func(f *File) { f.Gate[0].Rate = ptr(9.0); f.Gate[0].Allow[0].Names = []string{"x@*"} }, ""},
		{"log level", func(f *File) { f.Log.Level = "debug" }, ""},
		{"drain", func(f *File) { f.DrainTimeout = &Duration{1} }, ""},
		{"listen", func(f *File) { f.Gate[0].Listen = "127.0.0.1:9101" }, `gate "a": listen changed ("127.0.0.1:9100" to "127.0.0.1:9101")`},
		{"upstream", func(f *File) { f.Gate[0].Upstream = "127.0.0.2:9101" }, `gate "a": upstream changed`},
		{"name", func(f *File) { f.Gate[0].Name = "b" }, `gate[0].name changed ("a" to "b")`},
		{"gates", func(f *File) {
			g := f.Gate[0]
			g.Name, g.Listen = "b", "127.0.0.1:9200"
			f.Gate = append(f.Gate, g)
		}, "the number of gates changed (1 to 2)"},
		{"log format", func(f *File) { f.Log.Format = "console" }, `log.format changed ("json" to "console")`},
		{"metrics", func(f *File) { f.Metrics.Listen = "127.0.0.1:9568" }, `metrics.listen changed`},
		{"max_handshakes", func(f *File) { f.MaxHandshakes = ptr(5) }, "max_handshakes changed (128 to 5)"},
		{"forward", func(f *File) { f.Forward = "kernel" }, `forward changed ("user" to "kernel")`},
		{"state_file", func(f *File) { f.StateFile = stateFile }, `state_file changed ("" to ` + strconv.Quote(stateFile) + ")"},
		{"admin", func(f *File) { f.Admin.Socket = adminSocket }, `admin.socket changed ("" to ` + strconv.Quote(adminSocket) + ")"},
		{"metrics.max_conns", func(f *File) { f.Metrics.MaxConns = ptr(3) }, "metrics.max_conns changed (64 to 3)"},
		{"tls.mode", func(f *File) { f.Gate[0].TLS.Mode = "passthrough"; f.Gate[0].RequireFlags = "" }, `gate "a": tls.mode changed ("off" to "passthrough")`},
		{"ban", func(f *File) { f.Gate[0].Ban.After = ptr(0); f.Gate[0].Ban.Never = []string{"10.0.0.0/8"} }, ""},
		{"setup_timeout", func(f *File) { f.Gate[0].SetupTimeout = &Duration{time.Minute} }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := compile(t, base())
			f := base()
			tt.change(f)
			err := RestartRequired(cur, compile(t, f))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("applied, want refused with %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not contain %q", err, tt.want)
			case tt.want != "" && !strings.HasSuffix(err.Error(), "(restart to apply)"):
				t.Fatalf("error %q does not say to restart", err)
			}
		})
	}
}

// A File encoded and loaded again gives the same effective configuration.
func TestEncodeRoundTrip(t *testing.T) {
	c, err := Load("../config.example.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	text, err := c.File.Encode()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Load(writeConfig(t, string(text)), nil)
	if err != nil {
		t.Fatalf("reloading the encoded file: %v\n%s", err, text)
	}
	if c.Encode()[strings.IndexByte(c.Encode(), '\n'):] != c2.Encode()[strings.IndexByte(c2.Encode(), '\n'):] {
		t.Errorf("round trip changed the configuration:\n%s\n---\n%s", c.Encode(), c2.Encode())
	}
	// Keys left out stay out.
	sparse, err := (&File{Gate: []Gate{{Name: "g"}}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"drain_timeout", "max_handshakes", "rate", "burst", "handshake_timeout"} {
		if strings.Contains(string(sparse), k) {
			t.Errorf("nil %s was encoded:\n%s", k, sparse)
		}
	}
}
