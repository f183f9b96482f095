package main

import (
	"cmp"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/distgate/distgate/config"
	"github.com/distgate/distgate/internal/testenv"
)

// A variant is one way distgate is configured in a run. "user" and
// "kernel" are columns of the main table (tests 1–7), each a distgate of
// its own with its own configuration file; "tls" and "passthrough" are
// paths of the TLS comparison (test 8).
type variant struct {
	key  string // as written in -variants (VARIANTS)
	name string // the target's name in the results
	head string // the column head
	// forward is the top-level `forward` key written into the file;
	// "" leaves it out (the default, user).
	forward string
	// The Erlang paths: where the gate listens and where its node listens.
	erlListen, erlBind string
}

var allVariants = []variant{
	{key: "user", name: "distgate", head: "distgate", erlListen: "127.0.0.5", erlBind: "127.0.0.6"},
	{key: "kernel", name: "distgate-kernel", head: "distgate kernel", forward: "kernel", erlListen: "127.0.0.12", erlBind: "127.0.0.13"},
	{key: "tls", name: "distgate-tls", head: "inet_tls → distgate terminate → node"},
	{key: "passthrough", name: "distgate-passthrough", head: "inet_tls → distgate passthrough → inet_tls node"},
}

// defaultVariants are measured unless -variants says otherwise; the
// ones a build or a machine cannot run are skipped with the reason.
const defaultVariants = "user,kernel,tls"

func parseVariants(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		found := false
		for _, v := range allVariants {
			found = found || v.key == k
		}
		if !found {
			return nil, fmt.Errorf("-variants: unknown variant %q (known: user, kernel, tls, passthrough)", k)
		}
		out[k] = true
	}
	return out, nil
}

// distgateText is the configuration file of a distgate variant: f with the
// top-level forward key and, if tls is not nil, the last gate's [gate.tls]
// table set.
func distgateText(f *config.File, forward string, tls *config.TLS) (string, error) {
	f.Forward = forward
	if tls != nil {
		f.Gate[len(f.Gate)-1].TLS = *tls
	}
	b, err := f.Encode()
	if err != nil {
		return "", fmt.Errorf("encode distgate config: %w", err)
	}
	return string(b), nil
}

// checkDistgate writes text into dir/name and has distgate check it; a
// refusal comes back as distgate's first line of output.
func (h *harness) checkDistgate(name, text string) (string, error) {
	p, err := writeFile(h.dir, name, text)
	if err != nil {
		return "", err
	}
	if out, err := output(h.bins["distgate"], "check", "-config", p); err != nil {
		// The file's path is this run's temporary directory: noise in a report.
		msg := strings.ReplaceAll(firstLine(strings.TrimPrefix(out, "distgate: ")), p+": ", "")
		return p, fmt.Errorf("distgate check refuses it: %s", msg)
	}
	return p, nil
}

// probe is what a distgate said about itself when it started at log level
// info: the forwarding path each gate reports in its "listening" line
// (empty where the build does not report one) and its warnings.
type probe struct {
	paths []string
	warns []string
}

// probeDistgate starts distgate once on conf (a file at log level info)
// until every one of gates has logged "listening", and stops it. The
// measured runs log at warn, where "listening" is not written.
func (h *harness) probeDistgate(name, conf string, gates int) (probe, error) {
	p, err := h.start(name+"-probe", h.bins["distgate"], "run", "-config", conf)
	if err != nil {
		return probe{}, err
	}
	defer p.Stop(syscall.SIGTERM, 5*time.Second)
	ls, err := testenv.WaitLines(p.Out, p.Done(), name+" to listen", 20*time.Second, func(raw []string) ([]testenv.Line, bool) {
		ls, _ := testenv.ParseLog(raw)
		return ls, len(testenv.Filter(ls, testenv.Msg("listening"))) >= gates
	})
	if err != nil {
		return probe{}, fmt.Errorf("%w\n%s", err, p.Out.Tail(10))
	}
	var pr probe
	for _, l := range ls {
		switch {
		case l.Str("message") == "listening":
			pr.paths = append(pr.paths, l.Str("path"))
		case l.Str("level") == "warn" || l.Str("level") == "error":
			w := l.Str("message")
			if e := l.Str("error"); e != "" {
				w += ": " + e
			}
			pr.warns = append(pr.warns, w)
		}
	}
	return pr, nil
}

// kernelCaps says whether this process has CAP_BPF and CAP_NET_ADMIN in
// its effective set (distgate's children inherit them), which the kernel
// path needs; without them it says which are missing.
func kernelCaps() (bool, string) {
	s, err := testenv.Status(os.Getpid(), "CapEff")
	if err != nil {
		return false, err.Error()
	}
	eff, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return false, fmt.Sprintf("CapEff %q: %v", s, err)
	}
	const capNetAdmin, capBPF = 12, 39
	var missing []string
	if eff&(1<<capNetAdmin) == 0 {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if eff&(1<<capBPF) == 0 {
		missing = append(missing, "CAP_BPF")
	}
	if len(missing) > 0 {
		return false, fmt.Sprintf("the kernel path needs CAP_BPF and CAP_NET_ADMIN; this run lacks %s (run as root)",
			strings.Join(missing, " and "))
	}
	return true, ""
}

// distgateTarget prepares one distgate variant of the main table: writes
// its configuration (and an info-level twin), checks it, and starts the
// twin once to hear which path it uses. It returns nil and the reason when
// the variant cannot run here; the default variant, which every other
// column is compared with, must run.
func (h *harness) distgateTarget(v variant) (*target, string, error) {
	if v.forward == "kernel" {
		if ok, why := kernelCaps(); !ok {
			return nil, why, nil
		}
	}
	a := h.gates[v.name]
	text, err := distgateText(distgateConfig(a, "warn", "close"), v.forward, nil)
	if err != nil {
		return nil, "", err
	}
	conf, err := h.checkDistgate(v.name+".toml", text)
	if err != nil {
		if v.forward == "" {
			return nil, "", err // the main column: nothing to compare without it
		}
		return nil, fmt.Sprintf("`forward = %q`: %v", v.forward, err), nil
	}
	infoText, err := distgateText(distgateConfig(a, "info", "close"), v.forward, nil)
	if err != nil {
		return nil, "", err
	}
	infoConf, err := writeFile(h.dir, v.name+"-probe.toml", infoText)
	if err != nil {
		return nil, "", err
	}
	pr, err := h.probeDistgate(v.name, infoConf, 2)
	if err != nil {
		if v.forward == "" {
			return nil, "", fmt.Errorf("%s: %w", v.name, err)
		}
		return nil, fmt.Sprintf("it did not start: %s", firstLine(err.Error())), nil
	}
	want := cmp.Or(v.forward, "user")
	skip, note := pr.verdict(want)
	if skip != "" {
		return nil, skip, nil
	}
	if note != "" {
		h.res.note(v.name + ": " + note)
	}
	t := &target{name: v.name, head: v.head, kind: "distgate", forward: want, addr: a.listen,
		erl: erlNode{name: "app@" + v.erlListen, bind: v.erlBind}}
	t.start = func() (*testenv.Proc, error) {
		return h.start(v.name, h.bins["distgate"], "run", "-config", conf)
	}
	return t, "", nil
}

// verdict decides from a probe whether a variant that asked for path want
// runs it: skip is why not; note, what the report should say about it.
// The `listening` line's path decides when the build reports one; a build
// that does not leaves its warnings as the only sign of a fallback.
func (pr probe) verdict(want string) (skip, note string) {
	path := ""
	for _, p := range pr.paths {
		if p != "" && p != want {
			return fmt.Sprintf("asked for `forward = %q`, distgate's `listening` line reports path %q (warnings: %s)",
				want, p, orNone(pr.warns)), ""
		}
		path = cmp.Or(path, p)
	}
	switch {
	case path == want:
		return "", fmt.Sprintf("distgate's `listening` line reports path %q", path)
	case want == "kernel" && len(pr.warns) > 0:
		return fmt.Sprintf("distgate warned at start (%s) and does not report its path; taken as a fallback to user",
			strings.Join(pr.warns, "; ")), ""
	case want == "kernel":
		return "", "distgate accepts `forward = \"kernel\"` and warned of nothing, but its `listening` line " +
			"carries no `path`, so the kernel path is assumed, not confirmed"
	}
	return "", ""
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, "; ")
}

// skip records that a variant does not run, and why, for the report and
// on stderr.
func (h *harness) skip(name, why string) {
	h.skipped[name] = why
	logf("%s skipped: %s", name, why)
}

// startupWarnings returns the warn and error lines a variant logged since
// it started (the measured runs log at warn, so a fallback would show).
func startupWarnings(p *testenv.Proc) []string {
	ls, _ := testenv.ParseLog(p.Out.All())
	var out []string
	for _, l := range ls {
		if lv := l.Str("level"); lv == "warn" || lv == "error" {
			out = append(out, l.Str("message")+" "+l.Str("error"))
		}
	}
	return out
}
