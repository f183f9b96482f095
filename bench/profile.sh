#!/usr/bin/env bash
# Profiles distgate's accept → decide → splice path: the Go micro-benchmarks
# of the parser, the policy check and the proxy, then pprof CPU, allocation
# and mutex profiles of the distgate binary under the setup-rate load and
# the flood, and a heap profile with idle admitted connections. Profiles and
# text summaries go to bench/results/profile/. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
out=bench/results/profile
mkdir -p "$out"

echo "== go test -bench (wire, policy, proxy)"
go test -run '^$' -bench . -benchmem -count 1 ./wire/ ./policy/ ./proxy/ | tee "$out/microbench.txt"

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
go build -o "$build/distgate" ./cmd/distgate
go build -o "$build/loadgen" ./bench/loadgen
ulimit -Sn "$(ulimit -Hn)"
"$build/loadgen" profile -distgate "$build/distgate" -out "$out" -dur "${DUR:-15s}"

for kind in setup flood; do
  echo "== CPU, $kind load (top 30 by cumulative time)"
  go tool pprof -top -cum -nodecount 30 "$build/distgate" "$out/cpu-$kind.pb.gz" 2>/dev/null | tee "$out/cpu-$kind.txt"
  echo "== CPU, $kind load (top 25 by own time)"
  go tool pprof -top -nodecount 25 "$build/distgate" "$out/cpu-$kind.pb.gz" 2>/dev/null | tee "$out/cpu-$kind-flat.txt"
  echo "== allocations during the $kind load (objects)"
  go tool pprof -top -nodecount 25 -sample_index alloc_objects -base "$out/allocs-$kind-before.pb.gz" \
    "$build/distgate" "$out/allocs-$kind-after.pb.gz" 2>/dev/null | tee "$out/allocs-$kind.txt"
  echo "== allocations during the $kind load (bytes)"
  go tool pprof -top -nodecount 25 -sample_index alloc_space -base "$out/allocs-$kind-before.pb.gz" \
    "$build/distgate" "$out/allocs-$kind-after.pb.gz" 2>/dev/null | tee "$out/allocs-$kind-bytes.txt"
  echo "== mutex contention during the $kind load"
  go tool pprof -top -nodecount 15 -base "$out/mutex-$kind-before.pb.gz" \
    "$build/distgate" "$out/mutex-$kind-after.pb.gz" 2>/dev/null | tee "$out/mutex-$kind.txt"
done
echo "== heap in use with idle connections"
go tool pprof -top -nodecount 20 -sample_index inuse_space "$build/distgate" "$out/heap-idle.pb.gz" 2>/dev/null | tee "$out/heap-idle-top.txt"
