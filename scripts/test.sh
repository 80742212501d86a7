#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what it needs, checks
# formatting and vet, runs every Go test with the race detector (unit tests,
# in-process raft clusters over TCP, and the real binary as separate
# processes in integration/).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
./scripts/setup.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
echo "== go vet"
go vet ./...
echo "== go test -race"
go test -race -count=1 -timeout 15m ./...
echo "== IPVS in a VM (integration/vm)"; if [ "$(id -u)" -eq 0 ]; then ./integration/vm/run.sh; else echo "integration/vm: SKIPPED, needs root (apt-get, QEMU): run sudo ./integration/vm/run.sh"; fi
