// Package cliflags parses a subcommand's flags wherever they stand among
// its other arguments (`distgate probe HOST -json`, `distgate init -node N
// elixir`), which the flag package alone stops at.
package cliflags

import "flag"

// Parse parses fs from args, flags before, between or after the other
// arguments, and returns those others in order. The error is fs.Parse's
// (flag.ErrHelp for -h).
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if args = fs.Args(); len(args) == 0 {
			return rest, nil
		}
		rest, args = append(rest, args[0]), args[1:]
	}
}
