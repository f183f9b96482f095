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
# TLS distribution: the ssl application (Debian splits it from erlang-base)
# for -proto_dist inet_tls clients, and openssl for the README's commands.
if ! command -v erl >/dev/null 2>&1 ||
  ! erl -noshell -eval 'case code:lib_dir(ssl) of {error, _} -> halt(1); _ -> halt(0) end.' >/dev/null 2>&1; then
  need+=(erlang-ssl)
fi
command -v openssl >/dev/null 2>&1 || need+=(openssl)
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
echo "== fuzz tlshello FuzzParse ($FUZZTIME)"
go test ./tlshello/ -run '^$' -fuzz '^FuzzParse$' -fuzztime "$FUZZTIME"
