#!/usr/bin/env bash
# Integrity under attack: 1 GiB (by default) each way through distgate to a
# Go node that echoes it, checked byte for byte at the client and by sha256
# at the node, while 50 000 connections from sources that are not allowed
# and 2 000 silent ones from an allowed source come and go.
#
#   stress/integrity.sh                3 runs, medians
#   stress/integrity.sh -bytes 134217728 -flood 2000 -runs 1
#
# Set DISTGATE=/path/to/distgate to measure a binary you built yourself (for
# instance an older version, to compare); otherwise this builds the tree's.
# Everything runs on loopback; every process started is stopped by its PID.
# See docs/SECURITY.md for the figures measured on the reference machine.
exec "$(dirname "$0")/run.sh" integrity "$@"
