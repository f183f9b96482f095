package config

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/distgate/distgate/internal/safefile"
	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/proxy"
)

// defaultConfig is used when no file is given: one gate on 0.0.0.0:9100 in
// front of 127.0.0.1:9101 that admits only this machine.
//
//go:embed default.toml
var defaultConfig string

// MaxFileSize caps the configuration file; a real one is a few KiB.
const MaxFileSize = 1 << 20

// Defaults for keys a file leaves out.
const (
	defaultDrainTimeout      = 10 * time.Second
	defaultMaxHandshakes     = 128
	defaultOnDeny            = "close"
	defaultMaxConns          = 256
	defaultMaxConnsPerSource = 8
	defaultRate              = 2.0 // with defaultBurst: config.example.toml says why
	defaultBurst             = 20
	defaultRequireFlags      = "otp25"
	defaultForward           = "user"
	defaultMetricsMaxConns   = 64
	defaultSetupTimeout      = 10 * time.Second
	defaultBanAfter          = 5
	defaultBanWindow         = 10 * time.Minute
	defaultBanDuration       = 15 * time.Minute
	defaultBanMaxDuration    = 24 * time.Hour
	maxRate                  = 1e6
	maxBurst                 = 1e6
	// maxBanAfter bounds ban.after: the ban table keeps up to that many
	// failure times per source, for up to policy.DefaultMaxBanSources
	// sources.
	maxBanAfter = 100
	// maxBanDuration bounds the ban durations, so that doubling a ban and
	// adding it to the clock stay far from overflowing.
	maxBanDuration = 365 * 24 * time.Hour
	// maxUnixPath is the longest path a Unix socket can be bound to
	// (sun_path is 108 bytes, one of them the terminating NUL).
	maxUnixPath = 107
)

// Duration is a TOML string such as "3s".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. \"3s\")", b)
	}
	d.Duration = v
	return nil
}

// MarshalText prints the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// File is the file format. Pointer fields tell "left out" (default) from
// an explicit zero (which validation may refuse).
type File struct {
	DrainTimeout  *Duration `toml:"drain_timeout"`
	MaxHandshakes *int      `toml:"max_handshakes"`
	Forward       string    `toml:"forward"`    // user | kernel
	StateFile     string    `toml:"state_file"` // bans across restarts; empty: kept in memory only
	Log           Log       `toml:"log"`
	Metrics       Metrics   `toml:"metrics"`
	Admin         Admin     `toml:"admin"`
	Gate          []Gate    `toml:"gate"`
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Metrics is the [metrics] table.
type Metrics struct {
	Listen   string `toml:"listen"`
	MaxConns *int   `toml:"max_conns"`
}

// Admin is the [admin] table.
type Admin struct {
	Socket string `toml:"socket"` // the admin socket's path; empty: off
}

// Gate is one [[gate]].
type Gate struct {
	Name              string    `toml:"name"`
	Listen            string    `toml:"listen"`
	Upstream          string    `toml:"upstream"`
	HandshakeTimeout  *Duration `toml:"handshake_timeout"`
	DialTimeout       *Duration `toml:"dial_timeout"`
	OnDeny            string    `toml:"on_deny"`
	MaxConns          *int      `toml:"max_conns"`
	MaxConnsPerSource *int      `toml:"max_conns_per_source"`
	Rate              *float64  `toml:"rate"`
	Burst             *int      `toml:"burst"`
	// RequireFlags is left empty on a passthrough gate, which cannot see
	// the flags.
	RequireFlags string    `toml:"require_flags,omitempty"`
	SetupTimeout *Duration `toml:"setup_timeout"`
	// CookieFile is the path of the node's cookie; the cookie itself is
	// never part of a File, so printing a File never shows it.
	CookieFile string  `toml:"cookie_file"`
	Ban        Ban     `toml:"ban"`
	TLS        TLS     `toml:"tls"`
	Allow      []Allow `toml:"allow"`
}

// Ban is a gate's [gate.ban] table.
type Ban struct {
	After       *int      `toml:"after"`
	Window      *Duration `toml:"window"`
	Duration    *Duration `toml:"duration"`
	MaxDuration *Duration `toml:"max_duration"`
	Never       []string  `toml:"never"`
}

// TLS is a gate's [gate.tls] table. Only Mode is printed for a gate whose
// mode is not terminate.
type TLS struct {
	Mode       string `toml:"mode"` // off | terminate | passthrough
	Cert       string `toml:"cert,omitempty"`
	Key        string `toml:"key,omitempty"`
	ClientCA   string `toml:"client_ca,omitempty"`
	MinVersion string `toml:"min_version,omitempty"`
}

// Allow is one [[gate.allow]].
type Allow struct {
	Sources    []string `toml:"sources"`
	Names      []string `toml:"names,omitempty"`
	Identities []string `toml:"identities,omitempty"`
	SNI        []string `toml:"sni,omitempty"`
}

// envConfig holds the DISTGATE_* variables.
type envConfig struct {
	Config        string `env:"CONFIG"`
	LogLevel      string `env:"LOG_LEVEL"`
	LogFormat     string `env:"LOG_FORMAT"`
	MetricsListen string `env:"METRICS_LISTEN"`
	Forward       string `env:"FORWARD"`
	StateFile     string `env:"STATE_FILE"`
	AdminSocket   string `env:"ADMIN_SOCKET"`
	Listen        string `env:"LISTEN"`
	Upstream      string `env:"UPSTREAM"`
	CookieFile    string `env:"COOKIE_FILE"`
	// DISTGATE_ALLOW_SOURCES and DISTGATE_ALLOW_NAMES are split by envList,
	// which refuses an empty list or item.
}

// Config is a validated configuration, with where it came from.
type Config struct {
	File
	Source   string // file path, or "embedded default"
	Warnings []string
	Gates    []Compiled // the gates, compiled, in file order
}

// Compiled is one gate's runtime form: its addresses, the settings a
// reload may change, and the values read from the files the gate names.
// Load builds it anew each time, re-reading those files, so a reload
// (SIGHUP) picks up a new cookie or certificate, and a file that became
// unreadable refuses the whole reload.
type Compiled struct {
	Name, Listen, Upstream string
	Settings               *proxy.Settings
	// Cookie is the node's cookie read from cookie_file, surrounding
	// whitespace trimmed; nil when cookie_file is empty (the gate does not
	// check digests). It never prints (see Secret); Settings.Cookie holds
	// the same bytes for the gate.
	Cookie Secret
	// TLS is the gate's TLS mode and, for TLSTerminate, the server side.
	TLS GateTLS
}

// Load reads the configuration: the file (flag, else DISTGATE_CONFIG, else
// the embedded default), then the environment. environ is the process
// environment as KEY=VALUE pairs.
func Load(flagPath string, environ []string) (*Config, error) {
	envMap := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			envMap[k] = v
		}
	}
	var ev envConfig
	if err := env.ParseWithOptions(&ev, env.Options{Prefix: "DISTGATE_", Environment: envMap}); err != nil {
		return nil, fmt.Errorf("environment: %w", err)
	}
	path := flagPath
	if path == "" {
		path = ev.Config
	}
	text, source := defaultConfig, "embedded default"
	if path != "" {
		// Only a regular file, and at most MaxFileSize of it: a FIFO
		// would block the read (and a reload with it), a device such as
		// /dev/zero would never end.
		b, err := safefile.Read(path, MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		text, source = string(b), path
	}
	var c File
	md, err := toml.Decode(text, &c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		keys := make([]string, len(un))
		for i, k := range un {
			keys[i] = fmt.Sprintf("%q", k.String())
		}
		return nil, fmt.Errorf("%s: unknown key %s", source, strings.Join(keys, ", "))
	}
	if err := applyEnv(&c, &ev, envMap); err != nil {
		return nil, err
	}
	l := &Config{File: c, Source: source}
	if errs := l.compile(); len(errs) > 0 {
		for i, err := range errs {
			errs[i] = fmt.Errorf("%s: %w", source, err)
		}
		return nil, errors.Join(errs...)
	}
	return l, nil
}

// applyEnv lays the DISTGATE_* variables over the file.
func applyEnv(c *File, ev *envConfig, envMap map[string]string) error {
	set := func(k string) bool { _, ok := envMap["DISTGATE_"+k]; return ok }
	if set("LOG_LEVEL") {
		c.Log.Level = ev.LogLevel
	}
	if set("LOG_FORMAT") {
		c.Log.Format = ev.LogFormat
	}
	if set("METRICS_LISTEN") {
		c.Metrics.Listen = ev.MetricsListen
	}
	if set("FORWARD") {
		c.Forward = ev.Forward
	}
	if set("STATE_FILE") {
		c.StateFile = ev.StateFile
	}
	if set("ADMIN_SOCKET") {
		c.Admin.Socket = ev.AdminSocket
	}
	var gateVars []string
	for _, k := range []string{"LISTEN", "UPSTREAM", "ALLOW_SOURCES", "ALLOW_NAMES", "COOKIE_FILE"} {
		if set(k) {
			gateVars = append(gateVars, "DISTGATE_"+k)
		}
	}
	if len(gateVars) == 0 {
		return nil
	}
	if len(c.Gate) > 1 {
		return fmt.Errorf("%s: apply only to a configuration with at most one gate; this one has %d", strings.Join(gateVars, ", "), len(c.Gate))
	}
	if len(c.Gate) == 0 {
		c.Gate = []Gate{{Name: "default"}}
	}
	g := &c.Gate[0]
	if set("LISTEN") {
		g.Listen = ev.Listen
	}
	if set("UPSTREAM") {
		g.Upstream = ev.Upstream
	}
	if set("COOKIE_FILE") {
		g.CookieFile = ev.CookieFile
	}
	if set("ALLOW_SOURCES") || set("ALLOW_NAMES") {
		if m := g.TLS.Mode; m != "" && m != "off" {
			// One entry of sources and names would silently drop the
			// file's identities or sni globs: an open door.
			return fmt.Errorf("DISTGATE_ALLOW_SOURCES and DISTGATE_ALLOW_NAMES: gate %q has tls.mode = %q; they would replace its allow entries and drop their identities and sni, so set its allow list in the file", g.Name, m)
		}
		var a Allow
		if set("ALLOW_SOURCES") {
			var err error
			if a.Sources, err = envList(envMap, "ALLOW_SOURCES", "list at least one CIDR or address"); err != nil {
				return err
			}
		} else if len(g.Allow) > 0 {
			// Only the names were given: keep the union of the file's sources.
			for _, e := range g.Allow {
				a.Sources = append(a.Sources, e.Sources...)
			}
		}
		if set("ALLOW_NAMES") {
			var err error
			if a.Names, err = envList(envMap, "ALLOW_NAMES", `any name is spelled "*"`); err != nil {
				return err
			}
		}
		g.Allow = []Allow{a}
	}
	return nil
}

// envList splits DISTGATE_<k> at commas and trims each item. A variable
// that is set must say something: an empty or blank value, or an empty
// item, is an error, so that a typo or an unset shell variable never turns
// into "no restriction". hint says what to write instead.
func envList(envMap map[string]string, k, hint string) ([]string, error) {
	v := envMap["DISTGATE_"+k]
	if strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("DISTGATE_%s: set but empty (%q); %s", k, v, hint)
	}
	items := strings.Split(v, ",")
	for i, s := range items {
		if items[i] = strings.TrimSpace(s); items[i] == "" {
			return nil, fmt.Errorf("DISTGATE_%s: item %d of %q is empty", k, i, v)
		}
	}
	return items, nil
}

// compile fills defaults, validates every key and builds the runtime
// settings. All problems are reported together.
func (l *Config) compile() []error {
	c := &l.File
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.DrainTimeout == nil {
		c.DrainTimeout = &Duration{defaultDrainTimeout}
	} else if c.DrainTimeout.Duration < 0 {
		bad("drain_timeout: %q must not be negative", c.DrainTimeout)
	}
	if c.MaxHandshakes == nil {
		c.MaxHandshakes = ptr(defaultMaxHandshakes)
	} else if *c.MaxHandshakes < 0 {
		bad("max_handshakes: %d must be 0 (no cap) or more", *c.MaxHandshakes)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	// The level goes into every gate's settings, so a reload reaches each
	// gate's logger; a bad word is reported above and never used.
	level, _ := zerolog.ParseLevel(c.Log.Level)
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format: %q is not one of json, console", c.Log.Format)
	}
	if c.Metrics.Listen != "" {
		if _, err := netip.ParseAddrPort(c.Metrics.Listen); err != nil {
			bad("metrics.listen: %q is not an address:port", c.Metrics.Listen)
		}
	}
	if c.Metrics.MaxConns == nil {
		c.Metrics.MaxConns = ptr(defaultMetricsMaxConns)
	} else if n := *c.Metrics.MaxConns; n < 1 || n > 1<<16 {
		bad("metrics.max_conns: %d is out of range [1, %d]", n, 1<<16)
	}
	if c.Forward == "" {
		c.Forward = defaultForward
	}
	if c.Forward != "user" && c.Forward != "kernel" {
		bad("forward: %q is not one of user, kernel", c.Forward)
	}
	if c.StateFile != "" {
		if fi, err := os.Stat(c.StateFile); err == nil && fi.IsDir() {
			bad("state_file: %q is a directory; name the file to keep bans in", c.StateFile)
		}
	}
	if p := c.Admin.Socket; len(p) > maxUnixPath {
		bad("admin.socket: %q is %d bytes long; a Unix socket path is at most %d", p, len(p), maxUnixPath)
	}
	if len(c.Gate) == 0 {
		bad("gate: no [[gate]] is configured")
	}
	names := map[string]bool{}
	listens := map[string]string{}
	for i := range c.Gate {
		g := &c.Gate[i]
		where := fmt.Sprintf("gate[%d]", i)
		if g.Name == "" {
			bad("%s.name: must be set", where)
		} else if !validGateName(g.Name) {
			// The name goes into every log line and metric label as it
			// is: no control bytes, spaces or quotes.
			bad("%s.name: %q is not 1 to %d of A-Z a-z 0-9 _ . -", where, g.Name, maxGateName)
		} else {
			where = fmt.Sprintf("gate %q", g.Name)
			if names[g.Name] {
				bad("%s: name: %q is used by two gates", where, g.Name)
			}
			names[g.Name] = true
		}
		cg, warnings, gerrs := compileGate(g, where, c.DrainTimeout.Duration, level)
		errs = append(errs, gerrs...)
		if g.Listen != "" {
			if other, dup := listens[g.Listen]; dup {
				bad("%s: listen: %q is also the listen address of %s", where, g.Listen, other)
			}
			listens[g.Listen] = where
		}
		if len(gerrs) == 0 {
			l.Gates = append(l.Gates, cg)
			l.Warnings = append(l.Warnings, warnings...)
		}
	}
	return errs
}

func ptr[T any](v T) *T { return &v }

// maxGateName is the longest gate name (design: [A-Za-z0-9_.-]{1,64}).
const maxGateName = 64

func validGateName(n string) bool {
	if n == "" || len(n) > maxGateName {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// compileGate fills a gate's defaults and validates it.
// Its warnings are things that are valid but probably not meant.
func compileGate(g *Gate, where string, drain time.Duration, level zerolog.Level) (Compiled, []string, []error) {
	var errs []error
	// where is an argument, never part of the format: a gate's name may
	// hold a '%'.
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{where}, a...)...))
	}
	var warnings []string
	warn := func(format string, a ...any) {
		warnings = append(warnings, fmt.Sprintf("%s: "+format, append([]any{where}, a...)...))
	}

	if g.Listen == "" {
		bad("listen: must be set")
	} else if _, err := netip.ParseAddrPort(g.Listen); err != nil {
		bad("listen: %q is not an address:port (e.g. \"0.0.0.0:9100\")", g.Listen)
	}
	if g.Upstream == "" {
		bad("upstream: must be set")
	} else if _, err := splitUpstream(g.Upstream); err != nil {
		bad("upstream: %q: %v", g.Upstream, err)
	}
	durationKey := func(key string, d **Duration, def time.Duration) {
		if *d == nil {
			*d = &Duration{def}
		} else if (*d).Duration <= 0 {
			bad("%s: %q must be positive", key, (*d).String())
		}
	}
	durationKey("handshake_timeout", &g.HandshakeTimeout, proxy.DefaultHandshakeTimeout)
	durationKey("dial_timeout", &g.DialTimeout, proxy.DefaultDialTimeout)
	durationKey("setup_timeout", &g.SetupTimeout, defaultSetupTimeout)
	if g.SetupTimeout.Duration > 0 && g.SetupTimeout.Duration < g.HandshakeTimeout.Duration {
		// The watch runs from accept too, so it would cut a client that
		// is still within its handshake_timeout.
		bad("setup_timeout: %q is shorter than handshake_timeout %q; both count from accept", g.SetupTimeout.String(), g.HandshakeTimeout.String())
	}
	if g.OnDeny == "" {
		g.OnDeny = defaultOnDeny
	}
	if g.OnDeny != "close" && g.OnDeny != "reset" {
		bad("on_deny: %q is not one of close, reset", g.OnDeny)
	}
	intKey := func(key string, v **int, def, lo, hi int) {
		if *v == nil {
			*v = &def
		} else if **v < lo || **v > hi {
			bad("%s: %d is out of range [%d, %d]", key, **v, lo, hi)
		}
	}
	intKey("max_conns", &g.MaxConns, defaultMaxConns, 1, 1<<20)
	intKey("max_conns_per_source", &g.MaxConnsPerSource, defaultMaxConnsPerSource, 1, 1<<20)
	intKey("burst", &g.Burst, defaultBurst, 1, maxBurst)
	if g.Rate == nil {
		g.Rate = ptr(defaultRate)
	} else if r := *g.Rate; math.IsNaN(r) || r <= 0 || r > maxRate {
		bad("rate: %v is out of range (0, %g] (new connections per second per source)", r, maxRate)
	}

	// TLS first: the mode decides which of the other keys make sense.
	gt, tlsWarnings, tlsErrs := compileTLS(&g.TLS)
	for _, err := range tlsErrs {
		bad("%w", err)
	}
	for _, w := range tlsWarnings {
		warn("%s", w)
	}
	passthrough := g.TLS.Mode == "passthrough"

	var req policy.Require
	switch {
	case passthrough && g.RequireFlags != "":
		bad("require_flags: %q: a passthrough gate cannot see the capability flags (they travel inside TLS); remove the key", g.RequireFlags)
	case passthrough:
	default:
		if g.RequireFlags == "" {
			g.RequireFlags = defaultRequireFlags
		}
		var err error
		if req, err = policy.ParseRequire(g.RequireFlags); err != nil {
			bad("require_flags: %v", err)
		}
	}

	var cookie Secret
	switch {
	case g.CookieFile == "":
	case passthrough:
		bad("cookie_file: %q: a passthrough gate cannot check cookies (the handshake travels inside TLS); remove the key", g.CookieFile)
	default:
		var err error
		if cookie, err = readCookie(g.CookieFile); err != nil {
			bad("cookie_file: %w", err)
		}
	}

	ban := compileBan(&g.Ban, bad)

	if len(g.Allow) == 0 {
		bad("allow: no [[gate.allow]] entry; a gate with none would deny everything")
	}
	rules := &policy.Rules{Require: req}
	var openSources []string
	for i, a := range g.Allow {
		var e policy.Entry
		if len(a.Sources) == 0 {
			bad("allow[%d].sources: must list at least one CIDR or address", i)
		}
		for j, s := range a.Sources {
			p, err := parseSource(s)
			if err != nil {
				bad("allow[%d].sources[%d]: %v", i, j, err)
				continue
			}
			if p.Bits() == 0 {
				openSources = append(openSources, fmt.Sprintf("allow[%d].sources[%d]: %q admits every %s source", i, j, s, map[bool]string{true: "IPv4", false: "IPv6"}[p.Addr().Is4()]))
			}
			e.Sources = append(e.Sources, p)
		}
		if passthrough && a.Names != nil {
			bad("allow[%d].names: a passthrough gate cannot see node names (they travel inside TLS); use sni", i)
		}
		e.Names = globList(a.Names, fmt.Sprintf("allow[%d].names", i), policy.GlobName, bad, warn)
		if a.Names != nil && len(a.Names) == 0 {
			warn("allow[%d].names: an empty list admits any name; write [\"*\"] to say so, or list the names", i)
		}
		if slices.Contains(a.Names, "*") {
			// "*" is how any name is spelled (design: Configuration), so
			// it must admit what an omitted list admits, a dynamic-name
			// (NAME_ME) request included, which carries no name for a
			// glob to match.
			e.Names = nil
		}
		switch {
		case a.Identities == nil:
		case g.TLS.Mode != "terminate":
			bad("allow[%d].identities: only a gate with tls.mode = \"terminate\" sees client certificates", i)
		case g.TLS.ClientCA == "":
			bad("allow[%d].identities: needs tls.client_ca, so that client certificates are asked for and verified", i)
		}
		e.Identities = globList(a.Identities, fmt.Sprintf("allow[%d].identities", i), policy.GlobIdentity, bad, warn)
		if a.SNI != nil && !passthrough {
			bad("allow[%d].sni: only a gate with tls.mode = \"passthrough\" matches on the SNI", i)
		}
		e.SNI = globList(a.SNI, fmt.Sprintf("allow[%d].sni", i), policy.GlobHost, bad, warn)
		rules.Allow = append(rules.Allow, e)
	}
	if len(errs) > 0 {
		return Compiled{}, nil, errs
	}
	for _, w := range openSources {
		warn("%s", w)
	}
	if ap, err := netip.ParseAddrPort(g.Upstream); err == nil && !ap.Addr().IsLoopback() {
		warn("upstream: %q is not a loopback address; the node's port must not be reachable from outside, or the gate can be walked around", g.Upstream)
	}
	return Compiled{
		Name: g.Name, Listen: g.Listen, Upstream: g.Upstream,
		Settings: &proxy.Settings{
			Rules:             rules,
			HandshakeTimeout:  g.HandshakeTimeout.Duration,
			DialTimeout:       g.DialTimeout.Duration,
			Reset:             g.OnDeny == "reset",
			MaxConns:          *g.MaxConns,
			MaxConnsPerSource: *g.MaxConnsPerSource,
			Rate:              rate.Limit(*g.Rate),
			Burst:             *g.Burst,
			DrainTimeout:      drain,
			LogLevel:          level,
			SetupTimeout:      g.SetupTimeout.Duration,
			Cookie:            []byte(cookie),
			Ban:               ban,
			TLS:               gt.Mode,
			TLSConfig:         gt.Config,
		},
		Cookie: cookie,
		TLS:    gt,
	}, warnings, nil
}

// parseSource parses an allow or never entry: a CIDR, or a bare address
// for its /32 or /128.
func parseSource(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if !strings.Contains(s, "/") {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil {
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
	}
	if i := strings.IndexByte(s, '%'); i >= 0 {
		// Addresses are matched without their zone (a connection's
		// source is unzoned), so a zone here would promise a scope
		// that is not enforced. One rule for both spellings.
		return netip.Prefix{}, fmt.Errorf("%q has a zone (%s); sources match on every interface, so write it without the zone", s, strings.SplitN(s[i:], "/", 2)[0])
	}
	switch {
	case err != nil || p.Addr().Is4In6():
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or address", s)
	case p != p.Masked():
		// "10.0.0.5/8" is almost always a typo for something narrower;
		// widening it silently would open a door.
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %q?)", s, p.Masked())
	}
	return p, nil
}

// globList compiles a list of globs; key names the list in errors and
// warnings. A glob that can never match a value of its kind warns.
func globList(pats []string, key string, kind policy.GlobKind, bad, warn func(string, ...any)) []policy.Glob {
	var out []policy.Glob
	for j, n := range pats {
		gl, err := policy.CompileGlob(n)
		if err != nil {
			bad("%s[%d]: %v", key, j, err)
			continue
		}
		if why := gl.NeverMatches(kind); why != "" {
			warn("%s[%d]: %q can never match: %s", key, j, n, why)
		}
		out = append(out, gl)
	}
	return out
}

// compileBan fills [gate.ban]'s defaults and checks it. after = 0 turns
// bans off; the other keys are then still filled and printed, but not
// required to make sense together.
func compileBan(b *Ban, bad func(string, ...any)) policy.BanRules {
	if b.After == nil {
		b.After = ptr(defaultBanAfter)
	} else if n := *b.After; n < 0 || n > maxBanAfter {
		bad("ban.after: %d is out of range [0, %d] (0 turns bans off)", n, maxBanAfter)
	}
	dur := func(key string, d **Duration, def time.Duration) {
		if *d == nil {
			*d = &Duration{def}
			return
		}
		switch v := (*d).Duration; {
		case v > maxBanDuration:
			bad("ban.%s: %q is over %s", key, (*d).String(), maxBanDuration)
		case v < 0, v == 0 && *b.After > 0:
			bad("ban.%s: %q must be positive", key, (*d).String())
		}
	}
	dur("window", &b.Window, defaultBanWindow)
	dur("duration", &b.Duration, defaultBanDuration)
	dur("max_duration", &b.MaxDuration, defaultBanMaxDuration)
	if *b.After > 0 && b.MaxDuration.Duration < b.Duration.Duration {
		bad("ban.max_duration: %q is shorter than ban.duration %q", b.MaxDuration.String(), b.Duration.String())
	}
	if b.Never == nil {
		b.Never = []string{}
	}
	r := policy.BanRules{
		After: *b.After, Window: b.Window.Duration,
		Duration: b.Duration.Duration, MaxDuration: b.MaxDuration.Duration,
	}
	for j, s := range b.Never {
		p, err := parseSource(s)
		if err != nil {
			bad("ban.never[%d]: %v", j, err)
			continue
		}
		r.Never = append(r.Never, p)
	}
	return r
}

// Encode prints the effective configuration as TOML, with a first comment
// line saying where it came from.
func (l *Config) Encode() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# effective configuration (from %s)\n", l.Source)
	if err := toml.NewEncoder(&b).Encode(l.File); err != nil {
		fmt.Fprintf(&b, "# cannot print: %v\n", err)
	}
	return b.String()
}

// Encode writes f as a TOML document that Load reads back to the same
// values; keys left out (nil) stay out. Tests and harnesses write their
// configurations with it instead of by hand.
func (f *File) Encode() ([]byte, error) {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(f); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}
