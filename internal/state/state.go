// Package state keeps the gates' bans across restarts (the top-level
// state_file): a small versioned JSON document, written atomically by a
// Writer that coalesces changes, and loaded whole or not at all.
//
// At start the daemon loads the file and restores each gate's bans, then
// keeps a Writer until shutdown:
//
//	s, err := state.Load(path, len(gates), time.Now())
//	switch {
//	case errors.Is(err, fs.ErrNotExist): // first start
//	case err != nil:
//		log.Warn().Err(err).Msg("state file ignored") // start with no bans
//	default:
//		for name, bans := range s { table[name].Restore(bans, time.Now()) }
//	}
//	w := state.NewWriter(path, snapshot, func(err error) { log.Warn().Err(err).Msg("state file") })
//	defer w.Close()
//
// where snapshot returns every gate's Bans.List(time.Now()). Call
// w.Changed() after each ban, unban, and reload that lifted bans; bans that
// expire need no write, since Load drops them.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/distgate/distgate/internal/safefile"
	"github.com/distgate/distgate/policy"
)

// Version is the format this package writes and the only one it loads.
const Version = 1

// State holds the active bans per gate name.
type State map[string][]policy.Ban

// MaxEntryBytes bounds one encoded ban in the file, with its separator: the
// longest source ("ffff:ffff:ffff:ffff::/64"), an until with nanoseconds,
// and failures and level of 19 digits each come to about 150 bytes
// (TestMaxEntryBytes encodes that worst case).
const MaxEntryBytes = 160

// MaxSize is the cap Load puts on the file for a configuration of gates
// gates: each gate's ban table holds at most policy.DefaultMaxBanSources
// bans, so a file that the daemon wrote fits in MaxEntryBytes each plus
// 1 MiB for gate names and the frame (10 MiB a gate at most; a full table
// is about 6.5 MiB in practice). The cap follows the configuration rather
// than being a flat 1 MiB so that a gate under a wide attack, with its
// table full, still gets all its bans back after a restart; and it stays a
// cap, so a state_file pointed at some large file by mistake is refused
// instead of read into memory. A file written with more gates than the
// configuration now has may exceed it: it is then refused as a whole, like
// any other unreadable file.
func MaxSize(gates int) int64 {
	return safefile.DefaultMax + int64(max(gates, 1))*policy.DefaultMaxBanSources*MaxEntryBytes
}

// document is the file's JSON form. Field names are part of the format.
type document struct {
	Version int                `json:"version"`
	Saved   time.Time          `json:"saved"`
	Gates   map[string][]entry `json:"gates"`
}

type entry struct {
	Source   netip.Prefix `json:"source"`
	Until    time.Time    `json:"until"`
	Failures int          `json:"failures"`
	Level    int          `json:"level"`
}

// Load reads the state file at path (through safefile, capped at
// MaxSize(gates)) and returns the bans that have not expired at now. Any
// problem (unreadable, not a regular file, too large, not JSON, another
// version, an invalid entry) returns an error and no state at all, never a
// part of one: the caller logs it at warn and starts with no bans. A file
// that does not exist yet gives an error for which errors.Is(err,
// fs.ErrNotExist) holds, which is a normal first start.
func Load(path string, gates int, now time.Time) (State, error) {
	b, err := safefile.Read(path, MaxSize(gates))
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	s, err := decode(b, now)
	if err != nil {
		return nil, fmt.Errorf("state file %q: %w", path, err)
	}
	return s, nil
}

func decode(b []byte, now time.Time) (State, error) {
	// The version first, tolerantly, so that a newer format is reported as
	// such rather than as an unknown field.
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("not a distgate state file: %w", err)
	}
	if head.Version == nil {
		return nil, errors.New("not a distgate state file: no version")
	}
	if *head.Version != Version {
		return nil, fmt.Errorf("version %d is not supported (this distgate reads version %d)", *head.Version, Version)
	}
	var doc document
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a distgate state file: %w", err)
	}
	s := make(State, len(doc.Gates))
	for gate, es := range doc.Gates {
		if gate == "" {
			return nil, errors.New("a gate without a name")
		}
		var bans []policy.Ban
		for i, e := range es {
			if !e.Source.IsValid() || e.Source != e.Source.Masked() {
				return nil, fmt.Errorf("gate %q: ban %d: source %q is not a network prefix", gate, i, e.Source)
			}
			if e.Failures < 0 || e.Level < 0 {
				return nil, fmt.Errorf("gate %q: ban %d: negative failures or level", gate, i)
			}
			if !now.Before(e.Until) {
				continue // expired while distgate was down
			}
			bans = append(bans, policy.Ban{Source: e.Source, Until: e.Until, Failures: e.Failures, Level: e.Level})
		}
		if len(bans) > 0 {
			s[gate] = bans
		}
	}
	return s, nil
}

func encode(s State, now time.Time) ([]byte, error) {
	doc := document{Version: Version, Saved: now.UTC(), Gates: make(map[string][]entry, len(s))}
	for gate, bans := range s {
		es := make([]entry, 0, len(bans))
		for _, b := range bans {
			es = append(es, entry{Source: b.Source, Until: b.Until.UTC(), Failures: b.Failures, Level: b.Level})
		}
		doc.Gates[gate] = es
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Save writes s to path atomically: the whole document goes to a temporary
// file in the same directory (mode 0600), which is synced and then renamed
// over path, and the directory is synced so the rename survives a crash.
// Whoever reads path sees the old document or the new one, never a part.
func Save(path string, s State, now time.Time) error {
	b, err := encode(s, now)
	if err != nil {
		return fmt.Errorf("state file %q: %w", path, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp makes the file 0600 whatever the umask, so bans (addresses
	// of attackers, nothing secret, but nobody else's business) are never
	// readable by others, not even for a moment.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("state file %q: %w", path, err)
	}
	tmp := f.Name()
	if err := writeSync(f, b); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("state file %q: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("state file %q: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("state file %q: sync directory: %w", path, err)
	}
	return nil
}

// writeSync writes b to f, syncs and closes it.
func writeSync(f *os.File, b []byte) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
