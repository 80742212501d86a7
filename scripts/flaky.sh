#!/usr/bin/env bash
# flaky.sh N - run the whole test suite N times and report every test that
# failed, with how often: a test that fails in some runs and not others is
# a bug (DEVELOPERS.md), and this is how it is found.
#
# Each run is what ./scripts/test.sh runs: `go test -race -count=1 ./...`
# (with -json, so failures are attributed to tests), then the IPVS VM step
# as root. Logs go to $FLAKY_DIR (default /tmp/raftlb-flaky-<time>), one per
# run; the summary is printed at the end and written to summary.txt there.
# Exit status 1 if anything failed.
#
#   ./scripts/flaky.sh 10
#   FLAKY_VM=0 ./scripts/flaky.sh 20     Go tests only
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
N=${1:?usage: scripts/flaky.sh N}
DIR=${FLAKY_DIR:-/tmp/raftlb-flaky-$(date +%Y%m%d-%H%M%S)}
VM=${FLAKY_VM:-1}
mkdir -p "$DIR"
./scripts/setup.sh >/dev/null
: >"$DIR/failures"
for i in $(seq 1 "$N"); do
  t0=$(date +%s)
  go test -race -count=1 -json -timeout 15m ./... >"$DIR/run$i.json" 2>"$DIR/run$i.stderr" || true
  # Failed tests ("Test" set) and packages that failed without a failing
  # test (a build error, a panic, a timeout).
  grep '"Action":"fail"' "$DIR/run$i.json" | sed -E 's/.*"Package":"([^"]*)"(,"Test":"([^"]*)")?.*/\1 \3/' |
    sed "s/^/run$i /" >>"$DIR/failures" || true
  vm="skipped"
  if [ "$VM" = 1 ] && [ "$(id -u)" -eq 0 ]; then
    if ./integration/vm/run.sh >"$DIR/run$i.vm.log" 2>&1; then vm="ok"; else vm="FAIL"; echo "run$i integration/vm (VM suite)" >>"$DIR/failures"; fi
  fi
  echo "run $i/$N: $(( $(date +%s) - t0 ))s, failed: $(grep -c "^run$i " "$DIR/failures" || true), vm: $vm"
done
{
  echo "flaky.sh $N runs, $(date -u +%Y-%m-%dT%H:%MZ), logs in $DIR"
  if [ -s "$DIR/failures" ]; then
    echo "failures (runs failed / $N, package test):"
    # A failed subtest also fails its parent: report each line once per run.
    sort -u "$DIR/failures" | awk '{ $1=""; print }' | sort | uniq -c | sort -rn
  else
    echo "no test failed in $N runs"
  fi
} | tee "$DIR/summary.txt"
[ ! -s "$DIR/failures" ]
