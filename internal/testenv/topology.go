package testenv

import (
	"testing"
	"time"

	"github.com/distgate/distgate/config"
)

// The loopback topology of the design document, which the end-to-end tests
// and the stress tool share: the node is AppName bound to NodeIP:P,
// distgate listens on GateIP:P with upstream NodeIP:P, and clients dial
// AppName on port P, from GateIP unless a test binds them elsewhere
// (127.0.0.3, 127.0.0.4, … as distinct sources).
const (
	AppName = "app@127.0.0.1"
	GateIP  = "127.0.0.1"
	NodeIP  = "127.0.0.2"
)

// AppPort returns a port free on both GateIP and NodeIP.
func AppPort(t testing.TB) int {
	t.Helper()
	return Port(t, GateIP, NodeIP)
}

// App describes the node AppName on NodeIP:port.
func App(port int) Erl { return Erl{Name: AppName, Port: port, Addr: NodeIP} }

// Client describes a hidden client named name that calls AppName through
// port.
func Client(name string, port int) Erl {
	return Erl{Name: name, Port: port, Hidden: true, Target: AppName}
}

// AppGate returns a configuration of one gate named name on GateIP:port in
// front of NodeIP:port, with the allow entries given.
func AppGate(name string, port int, allow ...config.Allow) *config.File {
	return GateFile(name, Addr(GateIP, port), Addr(NodeIP, port), allow...)
}

// GateFile returns a configuration of one gate named name on listen in
// front of upstream, with the allow entries given and a short drain (1 s)
// so that stopping it is quick. Other keys stay out (their defaults) until
// the caller sets them.
func GateFile(name, listen, upstream string, allow ...config.Allow) *config.File {
	return &config.File{
		DrainTimeout: Dur(time.Second),
		Gate:         []config.Gate{{Name: name, Listen: listen, Upstream: upstream, Allow: allow}},
	}
}

// Allow returns one allow entry; no names means any name.
func Allow(sources []string, names ...string) config.Allow {
	return config.Allow{Sources: sources, Names: names}
}

// Ptr returns a pointer to v, for the optional keys of config.File.
func Ptr[T any](v T) *T { return &v }

// Dur returns a duration key of config.File.
func Dur(d time.Duration) *config.Duration { return &config.Duration{Duration: d} }
