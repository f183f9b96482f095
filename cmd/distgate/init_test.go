package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `distgate init` reaches package scaffold with its arguments and exit code.
func TestInitDispatch(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"init", "erlang", "-node", "app@myhost.example", "-public", "203.0.113.5",
		"-allow", "198.51.100.7", "-out", dir}, nil, &stdout, &stderr)
	if code != exitOK || !strings.Contains(stdout.String(), "wrote "+filepath.Join(dir, "distgate.toml")) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "distgate.toml")); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	stderr.Reset()
	code = realMain([]string{"init", "elixir", "-node", "myapp@myhost", "-public", "203.0.113.5",
		"-allow", "198.51.100.7", "-out", t.TempDir()}, nil, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "has no dot") {
		t.Errorf("dotless host: exit %d, stderr %q; want 2", code, stderr.String())
	}
}
