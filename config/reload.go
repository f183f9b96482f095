package config

import (
	"errors"
	"fmt"
	"strings"
)

// Reload reads the configuration again (Load) and checks that it can be
// applied to a process running cur (RestartRequired). It touches nothing
// running, so it may run beside the serving loop.
func Reload(cur *Config, path string, environ []string) (*Config, error) {
	next, err := Load(path, environ)
	if err != nil {
		return nil, err
	}
	if err := RestartRequired(cur, next); err != nil {
		return nil, err
	}
	return next, nil
}

// RestartRequired reports what in next cannot be applied to a process
// running cur without a restart: the set of gates (by position and name),
// a gate's listen or upstream address or TLS mode, the forwarding path,
// the state file, the admin socket, the log format, anything under
// [metrics] and the handshake cap. A reload that returns an error applies nothing, so
// a configuration is never half-applied.
func RestartRequired(cur, next *Config) error {
	var why []string
	if len(next.Gates) != len(cur.Gates) {
		why = append(why, fmt.Sprintf("the number of gates changed (%d to %d)", len(cur.Gates), len(next.Gates)))
	} else {
		for i, ng := range next.Gates {
			og := cur.Gates[i]
			if ng.Name != og.Name {
				why = append(why, fmt.Sprintf("gate[%d].name changed (%q to %q)", i, og.Name, ng.Name))
			}
			if ng.Listen != og.Listen {
				why = append(why, fmt.Sprintf("gate %q: listen changed (%q to %q)", og.Name, og.Listen, ng.Listen))
			}
			if ng.Upstream != og.Upstream {
				why = append(why, fmt.Sprintf("gate %q: upstream changed (%q to %q)", og.Name, og.Upstream, ng.Upstream))
			}
			if ng.TLS.Mode != og.TLS.Mode {
				why = append(why, fmt.Sprintf("gate %q: tls.mode changed (%q to %q)", og.Name, og.TLS.Mode, ng.TLS.Mode))
			}
		}
	}
	if next.Forward != cur.Forward {
		why = append(why, fmt.Sprintf("forward changed (%q to %q)", cur.Forward, next.Forward))
	}
	if next.StateFile != cur.StateFile {
		why = append(why, fmt.Sprintf("state_file changed (%q to %q)", cur.StateFile, next.StateFile))
	}
	if next.Admin.Socket != cur.Admin.Socket {
		why = append(why, fmt.Sprintf("admin.socket changed (%q to %q)", cur.Admin.Socket, next.Admin.Socket))
	}
	if next.Log.Format != cur.Log.Format {
		why = append(why, fmt.Sprintf("log.format changed (%q to %q)", cur.Log.Format, next.Log.Format))
	}
	if next.Metrics.Listen != cur.Metrics.Listen {
		why = append(why, fmt.Sprintf("metrics.listen changed (%q to %q)", cur.Metrics.Listen, next.Metrics.Listen))
	}
	if *next.Metrics.MaxConns != *cur.Metrics.MaxConns {
		why = append(why, fmt.Sprintf("metrics.max_conns changed (%d to %d)", *cur.Metrics.MaxConns, *next.Metrics.MaxConns))
	}
	if *next.MaxHandshakes != *cur.MaxHandshakes {
		why = append(why, fmt.Sprintf("max_handshakes changed (%d to %d)", *cur.MaxHandshakes, *next.MaxHandshakes))
	}
	if len(why) > 0 {
		return errors.New(strings.Join(why, "; ") + " (restart to apply)")
	}
	return nil
}
