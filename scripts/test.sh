#!/usr/bin/env bash
# Runs every test distgate has: formatting, vet, the race-enabled unit and
# end-to-end suites (real OTP 25 nodes and an Elixir release on loopback), and a
# short fuzz run of the wire parsers. Installs Erlang and Elixir from
# Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/usr/local/go/bin:$PATH"

need=()
command -v erl >/dev/null 2>&1 || need+=(erlang-base)
command -v elixir >/dev/null 2>&1 || need+=(elixir)
# systemd-analyze checks deploy/systemd/distgate.service offline.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${need[@]}"
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

# A short fuzz of each wire parser on every run; FUZZTIME=1h for a long one.
for target in FuzzParse FuzzParseNames FuzzFrames FuzzWatch; do
  echo "== fuzz $target (${FUZZTIME:=30s})"
  go test ./wire/ -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME"
done
