package probe

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
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

func (ew *errWriter) printf(format string, a ...any) {
	if ew.err == nil {
		_, ew.err = fmt.Fprintf(ew.w, format, a...)
	}
}
