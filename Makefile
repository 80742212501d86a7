# Convenience targets; the scripts are the source of truth.
.PHONY: run test build bench demo

build:
	go build -o bin/raftlb ./cmd/raftlb

run:
	./scripts/run.sh

test:
	./scripts/test.sh

bench:
	go run ./integration/bench/writes -record docs/benchmarks.md

# The lab demo (root): a director, two real servers and a client in network
# namespaces; requests to the VIP are balanced across the real servers.
demo:
	./scripts/setup.sh
	go run ./integration/demo
