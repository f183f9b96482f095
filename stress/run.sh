#!/usr/bin/env bash
# Builds the stress tool (and distgate, unless DISTGATE names a binary) into a
# temporary directory and runs one scenario: stress/run.sh flood|slow|integrity [flags].
# flood.sh, slow.sh and integrity.sh are this with the scenario filled in.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

scenario=$1
shift
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
go build -o "$build/stress" ./stress
bin=${DISTGATE:-}
if [ -z "$bin" ]; then
  go build -o "$build/distgate" ./cmd/distgate
  bin="$build/distgate"
fi
"$build/stress" "$scenario" -distgate "$bin" "$@"
