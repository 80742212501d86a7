# Convenience targets; the scripts are the source of truth.
.PHONY: run test build bench

build:
	go build -o bin/raftlb ./cmd/raftlb

run:
	./scripts/run.sh

test:
	./scripts/test.sh

bench:
	go run ./integration/bench/writes -record docs/benchmarks.md
