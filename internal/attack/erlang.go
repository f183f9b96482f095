package attack

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distgate/distgate/internal/testenv"
)

// The operators' side of the floods: Erlang client bodies (for erl -eval,
// with Node bound to the node to call) that time rpc:calls or new sessions
// and print one summary line each, and their parsers.

// RPCLoop is an Erlang client body: one rpc to connect, then 100 timed
// rpc:calls (the baseline), then it creates the file mark and goes on
// calling until the file stop exists (at most 20000 calls), pausing gap
// between calls. It prints a "baseline" and a "during" line: calls, failed
// calls, then p50, p99 and the maximum in microseconds (timer:tc).
func RPCLoop(mark, stop string, gap time.Duration) string {
	return strings.NewReplacer("MARK", strconv.Quote(mark), "STOP", strconv.Quote(stop),
		"GAP", strconv.FormatInt(gap.Milliseconds(), 10)).Replace(`
Call = fun() -> {T, R} = timer:tc(rpc, call, [Node, erlang, node, [], 5000]), {T, R =:= Node} end,
Run = fun Run(Cond, Acc, Bad, K) ->
    case Cond(K) of
        false -> {Acc, Bad};
        true ->
            {T, Ok} = Call(),
            timer:sleep(GAP),
            Run(Cond, [T | Acc], case Ok of true -> Bad; false -> Bad + 1 end, K + 1)
    end
end,
{_, true} = Call(),
{B, BB} = Run(fun(K) -> K < 100 end, [], 0, 0),
ok = file:write_file(MARK, <<>>),
{D, DB} = Run(fun(K) -> K < 20000 andalso not filelib:is_file(STOP) end, [], 0, 0),
Stats = fun(Name, L, Bad) ->
    S = lists:sort(L), N = length(S),
    P = fun(Q) -> lists:nth(max(1, min(N, ceil(N * Q))), S) end,
    io:format("~s ~p ~p ~p ~p ~p~n", [Name, N, Bad, P(0.5), P(0.99), lists:last(S)])
end,
Stats("baseline", B, BB),
Stats("during", D, DB)`)
}

// RPCStats is one line of RPCLoop's output.
type RPCStats struct {
	Calls, Failed  int
	P50, P99, MaxT time.Duration
}

func (s RPCStats) String() string {
	return fmt.Sprintf("%d calls, %d failed, p50 %v, p99 %v, max %v", s.Calls, s.Failed, s.P50, s.P99, s.MaxT)
}

// ParseRPCStats finds the line named name ("baseline" or "during") in
// RPCLoop's output.
func ParseRPCStats(out, name string) (RPCStats, error) {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) != 6 || f[0] != name {
			continue
		}
		var v [5]int64
		for i := range v {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return RPCStats{}, fmt.Errorf("rpc stats line %q: %w", l, err)
			}
			v[i] = n
		}
		us := time.Microsecond
		return RPCStats{int(v[0]), int(v[1]), time.Duration(v[2]) * us, time.Duration(v[3]) * us, time.Duration(v[4]) * us}, nil
	}
	return RPCStats{}, fmt.Errorf("no %q line in the client's output:\n%s", name, out)
}

// SessionLoop is an Erlang client body for an operator who needs new
// sessions: one rpc (which must work) and a disconnect, then it creates the
// file mark and keeps opening sessions (rpc:call, then disconnect_node so the
// next call needs a new connection and handshake, then a pause of gap) until
// the file stop exists (at most 5000 tries). It prints "sessions": tries,
// successes, ms from the mark to the first success (-1: none), and the
// longest time in ms without a success.
func SessionLoop(mark, stop string, gap time.Duration) string {
	return strings.NewReplacer("MARK", strconv.Quote(mark), "STOP", strconv.Quote(stop),
		"GAP", strconv.FormatInt(gap.Milliseconds(), 10)).Replace(`
Now = fun() -> erlang:monotonic_time(millisecond) end,
Try = fun() -> R = rpc:call(Node, erlang, node, [], 3000), erlang:disconnect_node(Node), R =:= Node end,
true = Try(),
ok = file:write_file(MARK, <<>>),
T0 = Now(),
Loop = fun L(N, Ok, First, LastOk, Gap) ->
    case N >= 5000 orelse filelib:is_file(STOP) of
        true -> {N, Ok, First, max(Gap, Now() - LastOk)};
        false ->
            case Try() of
                true ->
                    T = Now(),
                    F = case First of -1 -> T - T0; _ -> First end,
                    timer:sleep(GAP),
                    L(N + 1, Ok + 1, F, T, max(Gap, T - LastOk));
                false ->
                    timer:sleep(GAP),
                    L(N + 1, Ok, First, LastOk, Gap)
            end
    end
end,
{N, Ok, First, Gap} = Loop(0, 0, -1, T0, 0),
io:format("sessions ~p ~p ~p ~p~n", [N, Ok, First, Gap])`)
}

// Sessions is SessionLoop's result.
type Sessions struct {
	Tries, OK  int
	First      time.Duration // from the mark to the first success; -1: none
	LongestGap time.Duration
}

// ParseSessions reads SessionLoop's output.
func ParseSessions(out string) (Sessions, error) {
	for _, l := range strings.Split(out, "\n") {
		var s Sessions
		var first, gap int64
		if _, err := fmt.Sscanf(l, "sessions %d %d %d %d", &s.Tries, &s.OK, &first, &gap); err == nil {
			s.First, s.LongestGap = time.Duration(first)*time.Millisecond, time.Duration(gap)*time.Millisecond
			if first < 0 {
				s.First = -1
			}
			return s, nil
		}
	}
	return Sessions{}, fmt.Errorf("no sessions line in the client's output:\n%s", out)
}

// Operator is an Erlang client that runs one of the loops above in the
// background, as an operator working through an attack.
type Operator struct {
	name     string
	stopFile string
	done     chan struct{}
	out      string
	err      error
	once     sync.Once
}

// StartOperator runs the client e in dir with body(mark, stop), at most
// for limit, and returns once the body has created the file mark (its
// baseline is done). Stop creates the file stop and collects the output.
func StartOperator(dir string, e testenv.Erl, body func(mark, stop string) string, limit time.Duration) (*Operator, error) {
	mark := filepath.Join(dir, "mark")
	o := &Operator{name: e.Name, stopFile: filepath.Join(dir, "stop"), done: make(chan struct{})}
	go func() {
		o.out, o.err = e.Run(dir, body(mark, o.stopFile), limit)
		close(o.done)
	}()
	if err := testenv.WaitFile(mark, o.done, 2*time.Minute); err != nil {
		out, cerr := o.Stop()
		return nil, fmt.Errorf("operator %s: %w (%v); output:\n%s", e.Name, err, cerr, out)
	}
	return o, nil
}

// Operate is StartOperator for a test, bounded by testenv.ClientTimeout.
// Cleanup stops the operator; a client that failed fails the test.
func Operate(t testing.TB, e testenv.Erl, body func(mark, stop string) string) *Operator {
	t.Helper()
	o, err := StartOperator(t.TempDir(), e, body, testenv.ClientTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := o.Stop(); err != nil {
			t.Errorf("%v; output:\n%s", err, o.out)
		}
	})
	return o
}

// Stop ends the operator's loop and returns its output and how the client
// ended. It waits for the client (bounded by StartOperator's limit);
// calling it again returns the same.
func (o *Operator) Stop() (string, error) {
	o.once.Do(func() {
		_ = os.WriteFile(o.stopFile, nil, 0o644)
		<-o.done
		if o.err != nil {
			o.err = fmt.Errorf("operator %s: %w", o.name, o.err)
		}
	})
	return o.out, o.err
}
