# Shortcuts; the README's two commands need none of this.
.PHONY: test bench bench-quick

test:
	go test -race -count=1 -p 1 ./...

# The comparison report (its own module, so memberlist and etcd stay out of
# pulse's go.mod): about 30 minutes; rewrites the report section of
# docs/benchmarks.md and the plots in docs/benchmarks/.
bench:
	go -C bench run ./cmd/report

# Every comparison, small (under 3 minutes), into a temporary directory.
bench-quick:
	go -C bench run ./cmd/report --quick
