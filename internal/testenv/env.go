package testenv

import (
	"os"
	"path/filepath"
	"strings"
)

// CleanEnv returns this process's environment without what would change
// distgate's, erl's or a release's behaviour behind the caller's back
// (DISTGATE_*, ERL_*, ELIXIR_*, RELEASE_* and HOME), plus extra. Unless
// GORACE is set, a race-enabled distgate exits without the detector's
// default one-second pause.
func CleanEnv(extra ...string) []string {
	var env []string
	gorace := false
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "DISTGATE_"), strings.HasPrefix(k, "ERL_"), strings.HasPrefix(k, "ELIXIR_"),
			strings.HasPrefix(k, "RELEASE_"), k == "HOME":
			continue
		}
		gorace = gorace || k == "GORACE"
		env = append(env, kv)
	}
	if !gorace {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return append(env, extra...)
}

// ErlEnv is CleanEnv for an Erlang VM with dir as its home and crash-dump
// directory, so that nothing it writes lands in the repository.
func ErlEnv(dir string, extra ...string) []string {
	return CleanEnv(append([]string{"HOME=" + dir, "ERL_CRASH_DUMP=" + filepath.Join(dir, "erl_crash.dump")}, extra...)...)
}
