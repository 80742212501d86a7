#!/usr/bin/env bash
# Installs what raftlb needs to build and test on a fresh Debian 12 machine
# (run as root): a C compiler for `go test -race`, and the Go modules.
# Go >= 1.26 itself is expected at /usr/local/go or on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

if ! command -v go >/dev/null; then
  echo "setup: Go >= 1.26 is required (looked on PATH and in /usr/local/go/bin)" >&2
  exit 1
fi
missing=()
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)   # the nft tool, for operators and one drift test
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
go mod download
