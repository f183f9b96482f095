#!/usr/bin/env bash
# Denied flood: 50 000 connections (by default) from 127.0.0.2-5, which the
# gate does not allow, as fast as 64 workers can, while an allowed Erlang
# client times rpc:calls (p50/p99 before and during). Checks that every
# connection is closed without a byte, that nothing reaches the node (its
# output stays silent), that the log stays within the sampling bound, and
# reports distgate's CPU, peak RSS (VmRSS sampled, VmHWM) and descriptors.
#
#   stress/flood.sh                    3 runs of 50 000 connections, medians
#   stress/flood.sh -conns 10000 -runs 1
#
# Set DISTGATE=/path/to/distgate to measure a binary you built yourself (for
# instance an older version, to compare); otherwise this builds the tree's.
# Everything runs on loopback; every process started is stopped by its PID.
# See docs/SECURITY.md for the figures measured on the reference machine.
exec "$(dirname "$0")/run.sh" flood "$@"
