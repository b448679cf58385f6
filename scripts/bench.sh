#!/usr/bin/env bash
# Start-up benchmark: `airlock run -d` (until the agent's process runs in its
# container) against a bare `docker run --rm IMAGE true` on the same image,
# measured in the same go test run; prints both and their ratio (target <= 1.5).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench '^BenchmarkStartup$' -benchtime "${BENCHTIME:-10x}" -count 1 ./internal/e2e/ | tee /dev/stderr)
awk '
	/BenchmarkStartup\/bare/    { bare = $3 }
	/BenchmarkStartup\/airlock/ { air = $3 }
	END {
		if (!bare || !air) { print "bench: no figures"; exit 1 }
		printf "start-up: bare docker run %.0f ms, airlock run -d %.0f ms, ratio %.2fx (target <= 1.5x)\n", bare/1e6, air/1e6, air/bare
	}' <<<"$out"
