// Package testenv is the harness that distgate's end-to-end tests (test/),
// stress tool (stress/) and benchmark (bench/) share. Each piece is here
// once, with testing.TB helpers for tests (they fail the test and clean up
// after it) and error-returning ones for programs:
//
//   - processes (proc.go, lines.go): Cmd starts each process in a group of
//     its own, killed with its parent; output is captured as lines (Proc.Out)
//     or, with StderrPipe, stderr is handed to the caller; Run and Output
//     bound a process by time and, with MaxRSS, by memory.
//   - ports and addresses (ports.go, net.go, topology.go): free ports below
//     the ephemeral range, dialers bound to a source, the loopback topology.
//   - Erlang (erlang.go, release.go): nodes, one-shot clients, the line-driven
//     shell, the Elixir release.
//   - distgate (gate.go, log.go): the binary built once per test binary
//     (Distgate, RunDistgate), started from a config.File and waited on until
//     every gate listens (StartGate, GateCmd), its JSON log lines and matchers.
//   - /proc readers (procfs.go): memory, CPU, descriptors, sockets, limits,
//     status lines and ignored signals.
//   - a fake node (fakenode.go, frames.go) that completes the acceptor's side
//     of the handshake and serves checksummed records.
package testenv
