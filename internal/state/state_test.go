package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/safefile"
	"github.com/distgate/distgate/policy"
)

var t0 = time.Date(2026, 11, 27, 23, 30, 0, 123456789, time.UTC)

func ban(src string, until time.Time, failures, level int) policy.Ban {
	return policy.Ban{Source: netip.MustParsePrefix(src), Until: until, Failures: failures, Level: level}
}

func sample() State {
	return State{
		"myapp": {
			ban("203.0.113.9/32", t0.Add(15*time.Minute), 5, 1),
			ban("2001:db8:1:2::/64", t0.Add(time.Hour), 5, 3),
		},
		"other.gate": {ban("198.51.100.1/32", t0.Add(24*time.Hour), 0, 1)},
	}
}

func equalState(t *testing.T, got, want State) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d gates %v, want %d %v", len(got), got, len(want), want)
	}
	for g, wb := range want {
		gb := got[g]
		if len(gb) != len(wb) {
			t.Fatalf("gate %q: got %v, want %v", g, gb, wb)
		}
		for i := range wb {
			if gb[i].Source != wb[i].Source || !gb[i].Until.Equal(wb[i].Until) ||
				gb[i].Failures != wb[i].Failures || gb[i].Level != wb[i].Level {
				t.Errorf("gate %q ban %d: got %+v, want %+v", g, i, gb[i], wb[i])
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	if err := Save(p, sample(), t0); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("state file mode %04o, want 0600", m)
	}
	got, err := Load(p, 2, t0)
	if err != nil {
		t.Fatal(err)
	}
	equalState(t, got, sample())

	// What is on disk is the documented shape.
	b, _ := os.ReadFile(p)
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["version"] != float64(1) {
		t.Errorf("version = %v", doc["version"])
	}
	if !strings.Contains(string(b), `{"source":"203.0.113.9/32","until":"2026-11-27T23:45:00.123456789Z","failures":5,"level":1}`) {
		t.Errorf("file does not hold the ban as documented:\n%s", b)
	}

	// Saving an empty state replaces the file with an empty one.
	if err := Save(p, State{}, t0); err != nil {
		t.Fatal(err)
	}
	got, err = Load(p, 2, t0)
	if err != nil || len(got) != 0 {
		t.Fatalf("Load after empty save = %v, %v", got, err)
	}
}

// TestRestoreRoundTrip: what a Bans table lists, saved and loaded, restores
// into a fresh table as the same bans.
func TestRestoreRoundTrip(t *testing.T) {
	rules := policy.BanRules{After: 1, Window: time.Minute, Duration: 15 * time.Minute, MaxDuration: time.Hour}
	b := policy.NewBans(rules, 0)
	for _, a := range []string{"203.0.113.9", "2001:db8::1", "198.51.100.7"} {
		if _, ok := b.Fail(netip.MustParseAddr(a), t0); !ok {
			t.Fatalf("no ban for %s", a)
		}
	}
	p := filepath.Join(t.TempDir(), "state.json")
	if err := Save(p, State{"g": b.List(t0)}, t0); err != nil {
		t.Fatal(err)
	}
	s, err := Load(p, 1, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	b2 := policy.NewBans(rules, 0)
	if n := b2.Restore(s["g"], t0.Add(time.Minute)); n != 3 {
		t.Fatalf("restored %d bans, want 3", n)
	}
	equalState(t, State{"g": b2.List(t0)}, State{"g": b.List(t0)})
}

func TestLoadDropsExpired(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	if err := Save(p, sample(), t0); err != nil {
		t.Fatal(err)
	}
	// 30 minutes later the first 15-minute ban has ended; at exactly the
	// until of the second it has ended too (bans end at Until).
	got, err := Load(p, 2, t0.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	s := sample()
	equalState(t, got, State{"myapp": s["myapp"][1:], "other.gate": s["other.gate"]})
	got, err = Load(p, 2, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	equalState(t, got, State{"other.gate": s["other.gate"]})
	got, err = Load(p, 2, t0.Add(48*time.Hour))
	if err != nil || len(got) != 0 {
		t.Fatalf("all expired: Load = %v, %v", got, err)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.json"), 1, t0)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

// TestLoadRefused: every kind of bad file is refused as a whole, with a
// message that names the file; nothing of it is returned.
func TestLoadRefused(t *testing.T) {
	dir := t.TempDir()
	good := `{"source":"203.0.113.9/32","until":"2030-01-01T00:00:00Z","failures":5,"level":1}`
	for _, tc := range []struct{ name, text, want string }{
		{"empty", ``, "not a distgate state file"},
		{"truncated", `{"version":1,"gates":{"a":[` + good, "not a distgate state file"},
		{"not json", "bans: 1.2.3.4\n", "not a distgate state file"},
		{"array", `[1,2]`, "not a distgate state file"},
		{"no version", `{"gates":{}}`, "no version"},
		{"newer version", `{"version":2,"gates":{},"extra":true}`, "version 2 is not supported (this distgate reads version 1)"},
		{"unknown field", `{"version":1,"gates":{},"bans":[]}`, `unknown field "bans"`},
		{"unknown entry field", `{"version":1,"gates":{"a":[{"source":"1.2.3.4/32","until":"2030-01-01T00:00:00Z","why":"x"}]}}`, `unknown field "why"`},
		{"trailing data", `{"version":1,"gates":{}} {}`, "not a distgate state file"},
		{"bad source", `{"version":1,"gates":{"a":[{"source":"1.2.3.400/32","until":"2030-01-01T00:00:00Z"}]}}`, "not a distgate state file"},
		{"empty source", `{"version":1,"gates":{"a":[{"source":"","until":"2030-01-01T00:00:00Z"}]}}`, `gate "a": ban 0: source "invalid Prefix" is not a network prefix`},
		{"unmasked source", `{"version":1,"gates":{"a":[{"source":"1.2.3.4/24","until":"2030-01-01T00:00:00Z"}]}}`, "is not a network prefix"},
		{"negative", `{"version":1,"gates":{"a":[{"source":"1.2.3.4/32","until":"2030-01-01T00:00:00Z","failures":-1}]}}`, "negative"},
		{"bad time", `{"version":1,"gates":{"a":[{"source":"1.2.3.4/32","until":"tomorrow"}]}}`, "not a distgate state file"},
		{"empty gate name", `{"version":1,"gates":{"":[]}}`, "a gate without a name"},
		// One good gate and one bad: nothing, not the good half.
		{"half good", `{"version":1,"gates":{"a":[` + good + `],"b":[{"source":"x","until":"2030-01-01T00:00:00Z"}]}}`, "not a distgate state file"},
		{"half good, bad later", `{"version":1,"gates":{"a":[` + good + `],"b":[` + good + `,{"source":"1.2.3.4/32","until":"2030-01-01T00:00:00Z","level":-2}]}}`, `gate "b": ban 1: negative failures or level`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			if err := os.WriteFile(p, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Load(p, 1, t0)
			if err == nil {
				t.Fatalf("Load accepted it: %v", s)
			}
			if s != nil {
				t.Errorf("Load returned state %v with the error", s)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file and say %q", err, tc.want)
			}
		})
	}
}

func TestLoadNotRegular(t *testing.T) {
	link := filepath.Join(t.TempDir(), "state.json")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	_, err := Load(link, 1, t0)
	if !errors.Is(err, safefile.ErrNotRegular) {
		t.Fatalf("err = %v, want safefile.ErrNotRegular", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.json")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxSize(1) + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	_, err = Load(p, 1, t0)
	if !errors.Is(err, safefile.ErrTooLarge) {
		t.Fatalf("err = %v, want safefile.ErrTooLarge", err)
	}
	// Two gates' worth of cap lets the same file through to the decoder.
	if _, err := Load(p, 2, t0); errors.Is(err, safefile.ErrTooLarge) {
		t.Fatalf("with two gates: err = %v", err)
	}
}

// TestMaxEntryBytes: the per-ban budget behind MaxSize holds for the
// longest entry the encoder can produce.
func TestMaxEntryBytes(t *testing.T) {
	const maxInt = int(^uint(0) >> 1)
	worst := State{"g": {
		ban("ffff:ffff:ffff:ffff::/64", time.Date(2318, 12, 31, 23, 59, 59, 999999999, time.UTC), maxInt, maxInt),
		ban("ffff:ffff:ffff:ffff::/64", time.Date(2318, 12, 31, 23, 59, 59, 999999999, time.UTC), maxInt, maxInt),
	}}
	one := State{"g": worst["g"][:1]}
	b1, _ := encode(one, t0)
	b2, _ := encode(worst, t0)
	if per := len(b2) - len(b1); per > MaxEntryBytes {
		t.Fatalf("one entry takes %d bytes, over MaxEntryBytes %d", per, MaxEntryBytes)
	} else {
		t.Logf("worst-case entry: %d bytes (budget %d)", per, MaxEntryBytes)
	}
}

// TestFullTableFits: a gate whose ban table is full saves into a file
// that loads back under the one-gate cap.
func TestFullTableFits(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("65536 bans: slow under -race or -short; TestMaxEntryBytes bounds the same size")
	}
	bans := make([]policy.Ban, policy.DefaultMaxBanSources)
	for i := range bans {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, byte(i >> 8), byte(i), 15: 1})
		bans[i] = policy.Ban{Source: policy.KeyPrefix(a), Until: t0.Add(time.Duration(i+1) * time.Second).Add(24 * time.Hour), Failures: 5, Level: 7}
	}
	p := filepath.Join(t.TempDir(), "state.json")
	if err := Save(p, State{"gate-with-a-long-name": bans}, t0); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	t.Logf("full table: %d bytes, cap %d", fi.Size(), MaxSize(1))
	s, err := Load(p, 1, t0)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s["gate-with-a-long-name"]); n != len(bans) {
		t.Fatalf("loaded %d bans, want %d", n, len(bans))
	}
}

// TestSaveAtomic: while one goroutine saves two different documents in
// turn, a reader of the target name only ever sees one of them, complete,
// byte for byte; and no temporary file is left behind.
func TestSaveAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	small := sample()
	large := State{}
	for g := range 4 {
		var bans []policy.Ban
		for i := range 500 {
			bans = append(bans, ban(fmt.Sprintf("10.%d.%d.%d/32", g, i>>8, i&255), t0.Add(time.Hour), 5, 1))
		}
		large[fmt.Sprintf("g%d", g)] = bans
	}
	// encode is deterministic (map keys sorted), so each save of a document
	// writes exactly these bytes.
	encSmall, _ := encode(small, t0)
	encLarge, _ := encode(large, t0)
	if err := Save(p, small, t0); err != nil {
		t.Fatal(err)
	}
	const saves = 60
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads, smalls, larges int
	var readErr error
	wg.Go(func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(p)
			if err != nil {
				readErr = fmt.Errorf("read %d: %w", reads, err)
				return
			}
			reads++
			switch {
			case bytes.Equal(b, encSmall):
				smalls++
			case bytes.Equal(b, encLarge):
				larges++
			default:
				readErr = fmt.Errorf("read %d: %d bytes that are neither document (%d or %d bytes)", reads, len(b), len(encSmall), len(encLarge))
				return
			}
		}
	})
	for i := range saves {
		s := small
		if i%2 == 0 {
			s = large
		}
		if err := Save(p, s, t0); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	t.Logf("%d saves, %d reads (%d small, %d large)", saves, reads, smalls, larges)
	if smalls == 0 || larges == 0 {
		t.Fatal("the reader did not see both documents: the test proved nothing")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "state.json" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("directory holds %v, want only state.json", names)
	}
}

// TestSaveFailureLeavesNothing: a save that cannot rename (the target is a
// directory) fails, names the file, leaves the target alone and removes its
// temporary file.
func TestSaveFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	err := Save(p, sample(), t0)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("Save = %v, want an error naming %s", err, p)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the target", len(ents))
	}
	if err := Save(filepath.Join(dir, "missing", "state.json"), sample(), t0); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
}
