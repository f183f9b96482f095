package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs one of cli's commands with args and environ.
func runCLI(cli CLI, name string, environ []string, args ...string) result {
	var out, errb bytes.Buffer
	var code int
	switch name {
	case "status":
		code = cli.Status(args, environ, &out, &errb)
	case "ban":
		code = cli.Ban(args, environ, &out, &errb)
	case "unban":
		code = cli.Unban(args, environ, &out, &errb)
	default:
		panic(name)
	}
	return result{code, out.String(), errb.String()}
}

func (r result) want(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout does not contain %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not contain %q:\n%s", s, r.stderr)
		}
	}
	if len(stdout) == 0 && r.stdout != "" {
		t.Errorf("unexpected stdout:\n%s", r.stdout)
	}
	if len(stderr) == 0 && r.stderr != "" {
		t.Errorf("unexpected stderr:\n%s", r.stderr)
	}
}

func TestStatusText(t *testing.T) {
	_, path, _ := serve(t, newFakeBackend())
	r := runCLI(CLI{}, "status", nil, "-socket", path)
	r.want(t, 0, []string{
		"distgate v1.2.3, pid 4242, up 3h0m0s, config /etc/distgate/distgate.toml\n",
		"\ngate myapp: 0.0.0.0:9100 -> 127.0.0.1:9101, forward user, tls terminate\n",
		"  2 connections\n",
		"REMOTE", "NODE", "OUTCOME", "BYTES IN",
		"203.0.113.7:41160", "rem-1234-myapp@host (cert ops)", "3m12s", "1234", "56789",
		`[2001:db8::7]:5000`, `"rpc-9-myapp@host\x1b[31m"`, "(handshake)",
		"  1 ban; ban table: 3 failing sources, 4 ban records (cap 65536 each); rate limiter: 12 sources\n",
		"198.51.100.9/32", "14m0s",
		"\ngate other: 127.0.0.1:9200 -> 127.0.0.1:9201, forward kernel, tls off\n  0 connections\n  0 bans;",
	}, nil)
	if strings.Contains(r.stdout, "\x1b") {
		t.Error("an escape sequence from the daemon reached the terminal")
	}
}

func TestStatusJSON(t *testing.T) {
	_, path, _ := serve(t, newFakeBackend())
	r := runCLI(CLI{}, "status", nil, "-json", "-socket", path)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var st Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Gates) != 2 || st.Gates[0].Connections[0].BytesOut != 56789 || st.Gates[1].Bans == nil {
		t.Fatalf("decoded %+v", st)
	}
	// Empty lists are [], not null.
	if !strings.Contains(r.stdout, `"connections": []`) || !strings.Contains(r.stdout, `"bans": []`) {
		t.Errorf("empty lists not printed as []:\n%s", r.stdout)
	}
}

// TestStatusFieldsDocumented: every field name status -json can print is in
// the status -json section of docs/OPERATIONS.md, and that section names no
// field that does not exist.
func TestStatusFieldsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "### `status -json` fields")
	if start < 0 {
		t.Fatal("docs/OPERATIONS.md has no \"### `status -json` fields\" section")
	}
	doc = doc[start:]
	if end := strings.Index(doc[3:], "\n#"); end >= 0 {
		doc = doc[:end+3]
	}
	// The fully populated sample has every field (omitempty ones included).
	st := sampleStatus()
	st.Gates[0].Connections[0].SNI = "x"
	enc, _ := json.Marshal(st)
	var v any
	_ = json.Unmarshal(enc, &v)
	keys := map[string]bool{}
	collectKeys(v, keys)
	for k := range keys {
		if !strings.Contains(doc, `"`+k+`"`) {
			t.Errorf("field %q is not documented in the status -json section", k)
		}
	}
	documented := regexp.MustCompile(`(?m)^\s*"([a-z_]+)":`).FindAllStringSubmatch(doc, -1)
	if len(documented) == 0 {
		t.Fatal("found no documented fields")
	}
	for _, m := range documented {
		if !keys[m[1]] {
			t.Errorf("docs name field %q, which status -json does not have", m[1])
		}
	}
}

func collectKeys(v any, keys map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			keys[k] = true
			collectKeys(x, keys)
		}
	case []any:
		for _, x := range v {
			collectKeys(x, keys)
		}
	}
}

func TestSocketResolution(t *testing.T) {
	_, path, _ := serve(t, newFakeBackend())
	bogus := filepath.Join(t.TempDir(), "none.sock")
	env := []string{"DISTGATE_ADMIN_SOCKET=" + path}

	// -socket first, then the environment, then the configuration.
	runCLI(CLI{}, "status", env).want(t, 0, []string{"gate myapp"}, nil)
	runCLI(CLI{}, "status", env, "-socket", bogus).want(t, 1, nil, []string{bogus})
	var asked []string
	cli := CLI{ConfigSocket: func(p string, environ []string) (string, error) {
		asked = append(asked, p)
		switch p {
		case "with.toml":
			return path, nil
		case "broken.toml":
			return "", errors.New(`broken.toml: unknown key "admin.sockett"`)
		}
		return "", nil
	}}
	runCLI(cli, "status", env, "-config", "broken.toml").want(t, 0, []string{"gate myapp"}, nil)
	if len(asked) != 0 {
		t.Errorf("the configuration was read although DISTGATE_ADMIN_SOCKET is set: %v", asked)
	}
	runCLI(cli, "status", nil, "-config", "with.toml").want(t, 0, []string{"gate myapp"}, nil)
	runCLI(cli, "status", nil, "-config", "broken.toml").want(t, 2, nil, []string{`distgate status: broken.toml: unknown key "admin.sockett"`})
	runCLI(cli, "status", nil, "-config", "without.toml").want(t, 2, nil, []string{"without.toml has no [admin] socket"})
	runCLI(cli, "ban", []string{"DISTGATE_ADMIN_SOCKET="}, "203.0.113.9").want(t, 2, nil, []string{"no admin socket: give -socket PATH, set DISTGATE_ADMIN_SOCKET, or give -config FILE whose [admin] socket is set"})
	runCLI(CLI{}, "unban", nil, "203.0.113.9").want(t, 2, nil, []string{"no admin socket"})
	if !slices.Equal(asked, []string{"with.toml", "broken.toml", "without.toml", ""}) {
		t.Errorf("configuration asked for %q", asked)
	}
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "admin.sock")
	runCLI(CLI{}, "status", nil, "-socket", missing).want(t, 1, nil, []string{
		`distgate status: cannot reach distgate at "` + missing + `": connect: no such file or directory (is distgate running, with [admin] socket set to this path?)`,
	})
	// A stale socket: nobody listens.
	s, err := Listen(missing)
	if err != nil {
		t.Fatal(err)
	}
	s.ln.Close() // the file stays, as when a daemon is killed
	runCLI(CLI{}, "ban", nil, "-socket", missing, "203.0.113.9").want(t, 1, nil, []string{"connection refused (is distgate running"})
}

func TestBanCommand(t *testing.T) {
	_, path, _ := serve(t, newFakeBackend())
	sock := []string{"DISTGATE_ADMIN_SOCKET=" + path}
	runCLI(CLI{}, "ban", sock, "203.0.113.9").want(t, 0, []string{
		`gate "myapp": banned 203.0.113.9/32 until `, `(15m0s)`, `gate "other": banned 203.0.113.9/32 until `,
	}, nil)
	// Flags after the address; one gate; a duration; an IPv6 address bans
	// its /64; a mapped address is the IPv4 one.
	runCLI(CLI{}, "ban", sock, "2001:db8:1:2::77", "-gate", "other", "-for", "2h").want(t, 0, []string{`gate "other": banned 2001:db8:1:2::/64 until `, `(2h0m0s)`}, nil)
	runCLI(CLI{}, "ban", sock, "-gate", "myapp", "::ffff:198.51.100.3").want(t, 0, []string{`gate "myapp": banned 198.51.100.3/32`}, nil)

	// Refusals: exit 1, each gate's line on stderr; what was done still on
	// stdout.
	runCLI(CLI{}, "ban", sock, "127.0.0.1").want(t, 1, nil, []string{
		`distgate ban: gate "myapp": refused: 127.0.0.1 is in the gate's ban.never and is never banned`,
		`distgate ban: gate "other": refused: 127.0.0.1`,
	})
	runCLI(CLI{}, "ban", sock, "-gate", "nope", "203.0.113.9").want(t, 1, nil, []string{`distgate ban: gate "nope": no such gate`})

	// Usage errors: exit 2, and the daemon is not asked.
	for _, args := range [][]string{
		{},
		{"203.0.113.9", "203.0.113.10"},
		{"1.2.3.300"},
		{"10.0.0.0/8"},
		{"0.0.0.0"},
		{"-for", "soon", "203.0.113.9"},
		{"-for", "0s", "203.0.113.9"},
		{"-for", "-1h", "203.0.113.9"},
		{"-bogus", "203.0.113.9"},
	} {
		r := runCLI(CLI{}, "ban", sock, args...)
		if r.code != 2 || r.stderr == "" || r.stdout != "" {
			t.Errorf("ban %q: exit %d, stdout %q, stderr %q; want exit 2 and a message", args, r.code, r.stdout, r.stderr)
		}
	}
	runCLI(CLI{}, "ban", sock, "1.2.3.300").want(t, 2, nil, []string{`distgate ban: "1.2.3.300" is not an IP address`})
	runCLI(CLI{}, "ban", sock, "10.0.0.0/8").want(t, 2, nil, []string{`"10.0.0.0/8" is a network, not an address`})
	runCLI(CLI{}, "ban", sock, "-for", "0s", "203.0.113.9").want(t, 2, nil, []string{`-for 0s: give a positive duration`})
	runCLI(CLI{}, "ban", sock, "-for", "soon", "203.0.113.9").want(t, 2, nil, []string{`invalid value "soon" for flag -for`, "usage: distgate ban"})
	runCLI(CLI{}, "ban", sock).want(t, 2, nil, []string{"no ADDRESS given"})
	runCLI(CLI{}, "ban", sock, "-h").want(t, 0, nil, []string{"usage: distgate ban [-gate NAME] [-for DURATION] [-socket PATH] [-config FILE] ADDRESS"})
	runCLI(CLI{}, "status", sock, "extra").want(t, 2, nil, []string{`distgate status: unexpected argument "extra"`})
}

func TestUnbanCommand(t *testing.T) {
	_, path, _ := serve(t, newFakeBackend())
	sock := []string{"DISTGATE_ADMIN_SOCKET=" + path}
	runCLI(CLI{}, "ban", sock, "-gate", "myapp", "203.0.113.9").want(t, 0, []string{"banned"}, nil)
	runCLI(CLI{}, "unban", sock, "203.0.113.9").want(t, 0, []string{
		`gate "myapp": unbanned 203.0.113.9/32`,
		`gate "other": 203.0.113.9 was not banned`,
	}, nil)
	runCLI(CLI{}, "unban", sock, "-gate", "myapp", "203.0.113.9").want(t, 0, []string{`gate "myapp": 203.0.113.9 was not banned`}, nil)
	runCLI(CLI{}, "unban", sock, "-gate", "nope", "203.0.113.9").want(t, 1, nil, []string{`distgate unban: gate "nope": no such gate`})
	runCLI(CLI{}, "unban", sock, "nonsense").want(t, 2, nil, []string{`distgate unban: "nonsense" is not an IP address`})
	runCLI(CLI{}, "unban", sock, "-for", "1h", "203.0.113.9").want(t, 2, nil, []string{"flag provided but not defined: -for"})
}
