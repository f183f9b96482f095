package probe

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// WriteJSON writes r as indented JSON, the output of `distgate probe -json`.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for a person: one paragraph per epmd and per port, with
// the verdict and the fix, then a line of counts.
func WriteText(w io.Writer, r Report) error {
	ew := &errWriter{w: w}
	hostPort := func(host, addr string, port int) string {
		s := net.JoinHostPort(addr, strconv.Itoa(port))
		if host != addr {
			s = host + " (" + s + ")"
		}
		return s
	}
	counts := map[string]int{}
	for _, e := range r.Epmd {
		counts[e.State]++
		ew.printf("%s  epmd  %s\n", hostPort(e.Host, e.Addr, e.Port), e.State)
		ew.printf("  verdict: %s\n", e.Verdict)
		if e.Error != "" && e.State == StateExposed {
			ew.printf("  note: %s\n", e.Error)
		}
		if e.Fix != "" {
			ew.printf("  fix: %s\n", e.Fix)
		}
		ew.printf("\n")
	}
	label := map[string]string{"scanner_n": "scanner 'n' message", "made_up_N": "made-up 'N' message"}
	for _, p := range r.Ports {
		counts[p.State]++
		from := ""
		if p.From == "epmd" {
			from = "  (listed by epmd)"
		}
		ew.printf("%s  %s%s\n", hostPort(p.Host, p.Addr, p.Port), p.State, from)
		for _, a := range p.Attempts {
			ew.printf("  %-20s %s\n", label[a.Message]+":", describeAttempt(a, r.Timeout))
		}
		ew.printf("  verdict: %s\n", p.Verdict)
		if p.Fix != "" {
			ew.printf("  fix: %s\n", p.Fix)
		}
		ew.printf("\n")
	}
	ew.printf("%d exposed, %d silent, %d closed, %d filtered\n",
		counts[StateExposed], counts[StateSilent], counts[StateClosed], counts[StateFiltered])
	return ew.err
}

func describeAttempt(a Attempt, timeout time.Duration) string {
	switch a.Outcome {
	case OutcomeAnswered:
		raw, _ := hex.DecodeString(a.ReplyHex)
		if a.Status != "" {
			return fmt.Sprintf("answered %q (status %s)", raw, a.Status)
		}
		if len(raw) > 32 {
			return fmt.Sprintf("answered %d bytes: %q…", len(raw), raw[:32])
		}
		return fmt.Sprintf("answered %q", raw)
	case OutcomeClosed:
		return "closed without a byte"
	case OutcomeHeld:
		return fmt.Sprintf("no byte and no close within %s", timeout)
	case OutcomeRefused:
		return "connection refused"
	case OutcomeTimeout:
		return fmt.Sprintf("no connect within %s", timeout)
	default:
		return "connect failed: " + a.Error
	}
}

// errWriter keeps the first write error and skips the writes after it.
type errWriter struct {
	w   io.Writer
	err error
}

// printf writes a formatted line. Every string argument is escaped with
// printable first: node names, replies and errors come from the network,
// and a probed host must not be able to write escape sequences to the
// operator's terminal (clear it, retitle it, forge lines).
func (ew *errWriter) printf(format string, a ...any) {
	if ew.err != nil {
		return
	}
	for i, v := range a {
		if s, ok := v.(string); ok {
			a[i] = printable(s)
		}
	}
	_, ew.err = fmt.Fprintf(ew.w, format, a...)
}

// printable returns s with every byte or character a terminal could act on
// escaped: ASCII control bytes and DEL as \xNN, bytes that are not UTF-8
// as \xNN, and other non-printable characters (C1 controls, bidi
// overrides) as \uNNNN. Printable text, "…" and "–" included, is kept.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1, r < 0x80 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unicode.IsPrint(r) && r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
