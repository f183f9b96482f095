#!/usr/bin/env bash
# Slow and silent clients: connections from allowed sources (127.0.0.2-5)
# that send 0, 1 or 2 bytes and stall, closed-loop (each of 512 workers
# reconnects as soon as it is cut) for 10 s or 100 000 connections, with
# handshake_timeout 1s and the default max_handshakes (128), while an
# operator at 127.0.0.1 keeps opening new sessions (rpc:call, then
# disconnect). Reports how many of the operator's sessions got in, and
# distgate's peak descriptors and sockets. Per-source limits are lifted so
# that only the handshake cap stands in the way; -defaults keeps them.
#
#   stress/slow.sh                     3 runs, medians
#   stress/slow.sh -defaults           the same with the default per-source limits
#
# Set DISTGATE=/path/to/distgate to measure a binary you built yourself (for
# instance an older version, to compare); otherwise this builds the tree's.
# Everything runs on loopback; every process started is stopped by its PID.
# See docs/SECURITY.md for the figures measured on the reference machine.
exec "$(dirname "$0")/run.sh" slow "$@"
