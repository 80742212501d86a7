#!/usr/bin/env bash
# Builds raftlb and runs a one-node development director:
# API on http://127.0.0.1:7480, temporary data, no token for local writes.
# In another shell: ./bin/raftlb service add web -t 192.0.2.10:80 -s wrr
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
./scripts/setup.sh
mkdir -p bin
go build -o bin/raftlb ./cmd/raftlb
exec ./bin/raftlb agent -dev "$@"
