// Package version says which distgate this is, from the build information
// Go records in the binary.
package version

import "runtime/debug"

// String reports the module version and VCS revision from the build info,
// as `go install …@version` and `go build` in a checkout record them, e.g.
// "distgate v1.2.3 (<revision>, <time>) go1.26.0".
func String() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "distgate (unknown version)"
	}
	v := bi.Main.Version
	var rev, modified, when string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		case "vcs.time":
			when = s.Value
		}
	}
	out := "distgate " + v
	if rev != "" {
		// A pseudo-version already carries the short revision; print
		// the full one once, with the commit time.
		out += " (" + rev + modified
		if when != "" {
			out += ", " + when
		}
		out += ")"
	}
	return out + " " + bi.GoVersion
}
