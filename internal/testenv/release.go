package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

var releases struct {
	mu   sync.Mutex
	done map[string]string // key -> release root
}

// Release returns the root of an Elixir release (ROOT/bin/NAME): a bare
// `mix new NAME` app with the templates of relDir (*.eex) in its rel/
// directory. It has no dependencies, so neither hex nor rebar is needed.
// Building one takes a minute, so it is built once and shared by every
// test binary of every run on this machine: it lives in the temporary
// directory under a name made of a hash of its inputs (the name, the
// templates and the Elixir and Erlang installations), is built there under
// a lock file so that two test binaries never build it at once, and is
// renamed into place only when complete.
func Release(t testing.TB, name, relDir string) string {
	t.Helper()
	root, err := BuildRelease(name, relDir)
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// BuildRelease is Release for a program.
func BuildRelease(name, relDir string) (string, error) {
	mix, err := exec.LookPath("mix")
	if err != nil {
		return "", fmt.Errorf("an Elixir release needs Elixir 1.14 or later: `mix` is not on PATH (Debian/Ubuntu: apt-get install elixir)")
	}
	tmpls, err := filepath.Glob(filepath.Join(relDir, "*.eex"))
	if err != nil || len(tmpls) == 0 {
		return "", fmt.Errorf("%s: no release templates (%v)", relDir, err)
	}
	key, err := releaseKey(name, tmpls, mix)
	if err != nil {
		return "", err
	}
	releases.mu.Lock()
	defer releases.mu.Unlock()
	if root, ok := releases.done[key]; ok {
		return root, nil
	}
	dir := filepath.Join(os.TempDir(), "distgate-release-"+key)
	root := filepath.Join(dir, "done", name, "_build", "prod", "rel", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // and with it the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if _, err := os.Stat(filepath.Join(root, "bin", name)); err != nil {
		if err := buildRelease(dir, name, mix, tmpls); err != nil {
			return "", err
		}
	}
	if releases.done == nil {
		releases.done = map[string]string{}
	}
	releases.done[key] = root
	return root, nil
}

// releaseKey hashes what the release is built from.
func releaseKey(name string, tmpls []string, mix string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "name %s\n", name)
	sort.Strings(tmpls)
	for _, f := range tmpls {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "template %s %d\n%s\n", filepath.Base(f), len(b), b)
	}
	// An upgrade of Elixir or Erlang rewrites these.
	for _, p := range []string{mix, "elixir", "erl"} {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", err
		}
		if path, err = filepath.EvalSymlinks(path); err != nil {
			return "", err
		}
		st, err := os.Stat(path)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "tool %s %d %d\n", path, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// buildRelease builds in a staging directory and renames it to dir/done.
func buildRelease(dir, name, mix string, tmpls []string) error {
	stage := filepath.Join(dir, "stage")
	if err := os.RemoveAll(stage); err != nil { // what a killed build left
		return err
	}
	home := filepath.Join(stage, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return err
	}
	env := CleanEnv("HOME="+home, "MIX_HOME="+filepath.Join(home, ".mix"), "HEX_OFFLINE=1",
		"MIX_ENV=prod", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "ERL_CRASH_DUMP="+filepath.Join(stage, "erl_crash.dump"))
	run := func(wd string, args ...string) error {
		out, err := Cmd{Name: "mix", Args: append([]string{mix}, args...), Dir: wd, Env: env}.Run(3 * time.Minute)
		if err != nil {
			return fmt.Errorf("mix %v: %w\n%s", args, err, out)
		}
		return nil
	}
	if err := run(stage, "new", name); err != nil {
		return err
	}
	rel := filepath.Join(stage, name, "rel")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		return err
	}
	for _, f := range tmpls {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(rel, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	if err := run(filepath.Join(stage, name), "release"); err != nil {
		return err
	}
	return os.Rename(stage, filepath.Join(dir, "done"))
}

// ReleaseNode is the test release started as a node on a port of its own:
// bound to 127.0.0.2, named NAME@127.0.0.1, so a gate on 127.0.0.1 at the
// same port fronts it (the release's rel/ templates take the port from
// DIST_PORT).
type ReleaseNode struct {
	Bin  string   // ROOT/bin/NAME
	Dir  string   // the working directory and HOME of every command
	Env  []string // the environment every command is given
	Port int
	Node *Proc // the node itself: the release's scripts exec down to the BEAM
}

// StartRelease builds (once) and starts the release of relDir as a node,
// waits until it listens and stops it when the test ends. env is added to
// the environment of the node and of every command run with Run.
func StartRelease(t testing.TB, name, relDir string, env ...string) *ReleaseNode {
	t.Helper()
	root := Release(t, name, relDir)
	r := &ReleaseNode{Bin: filepath.Join(root, "bin", name), Dir: t.TempDir(), Port: AppPort(t)}
	r.Env = CleanEnv(append([]string{"HOME=" + r.Dir, "DIST_PORT=" + strconv.Itoa(r.Port),
		"RELEASE_TMP=" + filepath.Join(r.Dir, "tmp"), "LANG=C.UTF-8", "LC_ALL=C.UTF-8",
		"ERL_CRASH_DUMP=" + filepath.Join(r.Dir, "erl_crash.dump")}, env...)...)
	r.Node = Start(t, Cmd{Name: "release", Args: []string{r.Bin, "start"}, Dir: r.Dir, Env: r.Env, Grace: 15 * time.Second})
	if err := WaitPort(Addr("127.0.0.2", r.Port), WaitTimeout, r.Node); err != nil {
		t.Fatal(err)
	}
	return r
}

// Run runs bin/NAME with args (rpc, remote, stop, ...) as a client of the
// node, with the node's environment plus env, bounded by ClientTimeout.
func (r *ReleaseNode) Run(env []string, args ...string) (string, error) {
	return Cmd{Args: append([]string{r.Bin}, args...), Dir: r.Dir, Env: append(slices.Clone(r.Env), env...)}.Run(ClientTimeout)
}
