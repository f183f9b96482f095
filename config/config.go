package config

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/caarlos0/env/v11"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/distgate/distgate/policy"
	"github.com/distgate/distgate/proxy"
)

// defaultConfig is used when no file is given: one gate on 0.0.0.0:9100 in
// front of 127.0.0.1:9101 that admits only this machine.
//
//go:embed default.toml
var defaultConfig string

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
	maxRate                  = 1e6
	maxBurst                 = 1e6
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
	Log           Log       `toml:"log"`
	Metrics       Metrics   `toml:"metrics"`
	Gate          []Gate    `toml:"gate"`
}

// Log is the [log] table.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Metrics is the [metrics] table.
type Metrics struct {
	Listen string `toml:"listen"`
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
	RequireFlags      string    `toml:"require_flags"`
	Allow             []Allow   `toml:"allow"`
}

// Allow is one [[gate.allow]].
type Allow struct {
	Sources []string `toml:"sources"`
	Names   []string `toml:"names,omitempty"`
}

// envConfig holds the DISTGATE_* variables.
type envConfig struct {
	Config        string   `env:"CONFIG"`
	LogLevel      string   `env:"LOG_LEVEL"`
	LogFormat     string   `env:"LOG_FORMAT"`
	MetricsListen string   `env:"METRICS_LISTEN"`
	Listen        string   `env:"LISTEN"`
	Upstream      string   `env:"UPSTREAM"`
	AllowSources  []string `env:"ALLOW_SOURCES"`
	AllowNames    []string `env:"ALLOW_NAMES"`
}

// Config is a validated configuration, with where it came from.
type Config struct {
	File
	Source   string // file path, or "embedded default"
	Warnings []string
	Gates    []Compiled // the gates, compiled, in file order
}

// Compiled is one gate's runtime form: its addresses and the settings a
// reload may change.
type Compiled struct {
	Name, Listen, Upstream string
	Settings               *proxy.Settings
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
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
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
	gateVars := set("LISTEN") || set("UPSTREAM") || set("ALLOW_SOURCES") || set("ALLOW_NAMES")
	if !gateVars {
		return nil
	}
	if len(c.Gate) > 1 {
		return errors.New("DISTGATE_LISTEN, DISTGATE_UPSTREAM, DISTGATE_ALLOW_SOURCES and DISTGATE_ALLOW_NAMES apply only to a configuration with at most one gate; this one has " + fmt.Sprint(len(c.Gate)))
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
	if set("ALLOW_SOURCES") || set("ALLOW_NAMES") {
		var a Allow
		if set("ALLOW_SOURCES") {
			a.Sources = trimAll(ev.AllowSources)
		} else if len(g.Allow) > 0 {
			// Only the names were given: keep the union of the file's sources.
			for _, e := range g.Allow {
				a.Sources = append(a.Sources, e.Sources...)
			}
		}
		a.Names = trimAll(ev.AllowNames)
		g.Allow = []Allow{a}
	}
	return nil
}

func trimAll(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
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

// compileGate fills a gate's defaults and validates it.
// Its warnings are things that are valid but probably not meant.
func compileGate(g *Gate, where string, drain time.Duration, level zerolog.Level) (Compiled, []string, []error) {
	var errs []error
	// where is an argument, never part of the format: a gate's name may
	// hold a '%'.
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{where}, a...)...))
	}

	if g.Listen == "" {
		bad("listen: must be set")
	} else if _, err := netip.ParseAddrPort(g.Listen); err != nil {
		bad("listen: %q is not an address:port (e.g. \"0.0.0.0:9100\")", g.Listen)
	}
	if g.Upstream == "" {
		bad("upstream: must be set")
	} else if _, port, err := net.SplitHostPort(g.Upstream); err != nil || port == "" || port == "0" {
		bad("upstream: %q is not a host:port", g.Upstream)
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
	if g.RequireFlags == "" {
		g.RequireFlags = defaultRequireFlags
	}
	req, err := policy.ParseRequire(g.RequireFlags)
	if err != nil {
		bad("require_flags: %v", err)
	}
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
			p, err := netip.ParsePrefix(s)
			if !strings.Contains(s, "/") {
				var a netip.Addr
				if a, err = netip.ParseAddr(s); err == nil {
					p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
				}
			}
			switch {
			case err != nil || p.Addr().Is4In6() || p.Addr().Zone() != "":
				bad("allow[%d].sources[%d]: %q is not a CIDR or address", i, j, s)
				continue
			case p != p.Masked():
				// "10.0.0.5/8" is almost always a typo for something
				// narrower; widening it silently would open a door.
				bad("allow[%d].sources[%d]: %q has host bits set (did you mean %q?)", i, j, s, p.Masked())
				continue
			case p.Bits() == 0:
				openSources = append(openSources, fmt.Sprintf("allow[%d].sources[%d]: %q admits every %s source", i, j, s, map[bool]string{true: "IPv4", false: "IPv6"}[p.Addr().Is4()]))
			}
			e.Sources = append(e.Sources, p)
		}
		for j, n := range a.Names {
			gl, err := policy.CompileGlob(n)
			if err != nil {
				bad("allow[%d].names[%d]: %v", i, j, err)
				continue
			}
			e.Names = append(e.Names, gl)
		}
		rules.Allow = append(rules.Allow, e)
	}
	if len(errs) > 0 {
		return Compiled{}, nil, errs
	}
	var warnings []string
	for _, w := range openSources {
		warnings = append(warnings, where+": "+w)
	}
	if ap, err := netip.ParseAddrPort(g.Upstream); err == nil && !ap.Addr().IsLoopback() {
		warnings = append(warnings, fmt.Sprintf("%s: upstream: %q is not a loopback address; the node's port must not be reachable from outside, or the gate can be walked around", where, g.Upstream))
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
		},
	}, warnings, nil
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
