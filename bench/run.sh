#!/usr/bin/env bash
# Benchmarks distgate against no proxy, HAProxy and nginx stream on loopback,
# side by side in one run, and writes a markdown table to
# bench/results/latest.md (and stdout). See bench/README.md.
#
#   bench/run.sh            full run (about 10 minutes)
#   QUICK=1 bench/run.sh    short run (about 2 minutes)
#   ONLY=ping,esetup        a subset of the tests (see bench/README.md)
#   VARIANTS=user,kernel    the distgate variants (default user,kernel,tls)
#
# Installs haproxy, nginx-light, libnginx-mod-stream, erlang-base,
# erlang-ssl and openssl from Debian when they are missing. Starts its own proxies, upstream and Erlang
# nodes on 127.0.0.x with generated configs in a temporary directory, and
# stops only those; system services are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="/usr/local/go/bin:$PATH"

need=()
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
if command -v erl >/dev/null 2>&1; then
  # inet_tls distribution (test 8) needs the ssl application.
  erl -noshell -eval 'halt(case code:lib_dir(ssl) of {error, _} -> 1; _ -> 0 end).' >/dev/null 2>&1 ||
    need+=(erlang-ssl)
else
  need+=(erlang-base erlang-ssl)
fi
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${need[@]}"
fi

# The memory test holds 10 000 connections; a proxy needs several
# descriptors for each. Raising the hard limit needs root (or a high limit
# already); loadgen says so if it is too low.
ulimit -Hn 262144 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
echo "== building distgate and the load generator"
go build -o "$build/distgate" ./cmd/distgate
go build -o "$build/loadgen" ./bench/loadgen

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || rev="$rev with uncommitted changes"
args=(-distgate "$build/distgate" -out bench/results/latest.md -rev "$rev")
[ "${QUICK:-0}" = 1 ] && args+=(-quick)
[ -n "${ONLY:-}" ] && args+=(-only "$ONLY")
[ -n "${VARIANTS:-}" ] && args+=(-variants "$VARIANTS")
[ "${KEEP:-0}" = 1 ] && args+=(-keep)
echo "== running (progress on stderr, the table on stdout)"
"$build/loadgen" run "${args[@]}"
