#!/usr/bin/env bash
# The Go tests of `make test`, in two processes at once. One `go test ./...`
# ran internal/e2e's tests one after another, past an hour and a quarter.
#
#   - The first runs every package's tests but those below.
#   - The second runs the tests that use the test Kubernetes cluster, which
#     are named TestKubernetes* (they wait mostly on the cluster's pods),
#     then takes the cluster down (its control plane costs a share of a
#     core even when idle, and the machine is short of CPU), then runs the
#     hostile-sandbox tests, named TestHostile*, then the end-to-end tests
#     of the Gemini CLI and opencode agents (TestAgentGemini*,
#     TestAgentOpencode*): moved here, the two processes end at about the
#     same time.
#
# Each process writes its events (go test -json, through gotestsum) to a
# file and prints go test's usual output; at the end the slowest tests of
# each are listed, to balance the two by.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
timeout=${GOTEST_TIMEOUT:-80m}
cluster='^TestKubernetes'
hostile='^TestHostile'
agents='^TestAgent(Gemini|Opencode)'
prepare='^TestImageBuildOnEngines$'

# AIRLOCK_TEST_LOGS keeps the events of each process there, for a look at
# what took the time; else they go with the script.
if [ -n "${AIRLOCK_TEST_LOGS:-}" ]; then
	logs=$AIRLOCK_TEST_LOGS
	mkdir -p "$logs"
else
	logs=$(mktemp -d)
	trap 'rm -rf "$logs"' EXIT
fi
gotest() { # NAME go-test-args...
	local name=$1
	shift
	"$GO" tool gotestsum --format standard-quiet --jsonfile "$logs/$name.json" -- -count=1 -timeout "$timeout" "$@"
}
slowest() { # NAME
	echo "--- the slowest tests of $1:"
	"$GO" tool gotestsum tool slowest --jsonfile "$logs/$1.json" --threshold 60s | head -n 25
}
stamp() { echo "--- $(date -u +%T) $*"; }
# why: why each failed test failed, last (a long log is often read from
# its end).
why() { "$GO" run ./scripts/testfailures "$logs"/*.json; }

# TestMain's set-up (the binary, the image) and the images on the other
# engines, once before both, so the two processes never build an image at
# the same time.
stamp "the engines' images ($prepare)"
gotest prepare -run "$prepare" ./internal/e2e || { why; exit 1; }

second() {
	local rc=0
	stamp "the tests on the test cluster (go test -run '$cluster' ./...)"
	gotest cluster -run "$cluster" ./... || rc=1
	stamp "the test cluster goes down"
	scripts/k8s-cluster.sh down || rc=1
	stamp "the hostile-sandbox tests (go test -run '$hostile' ./...)"
	gotest hostile -run "$hostile" ./... || rc=1
	stamp "the Gemini CLI's and opencode's tests (go test -run '$agents' ./internal/e2e)"
	gotest agents -run "$agents" ./internal/e2e || rc=1
	stamp "the second process ended"
	return "$rc"
}
stamp "two processes: the cluster's, the hostile-sandbox and two agents' tests, and the rest"
AIRLOCK_E2E_SHARED=1 second >"$logs/second.out" 2>&1 &
second_pid=$!
AIRLOCK_E2E_SHARED=1 gotest rest -skip "$cluster|$hostile|$agents|$prepare" ./...
rest=$?
stamp "the rest ended (exit $rest)"
wait "$second_pid"
second_rc=$?
echo "--- the second process (exit $second_rc):"
cat "$logs/second.out"
slowest rest
slowest cluster
slowest hostile
slowest agents
# The projects' images the e2e tests built (TestMain leaves them to this
# script when AIRLOCK_E2E_SHARED is set: the other process may be using them).
for cli in docker podman; do
	command -v "$cli" >/dev/null || continue
	"$cli" image ls --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | sed 's|^localhost/||' |
		grep '^airlock-project-repo:' | xargs -r "$cli" rmi >/dev/null 2>&1 || true
done
why
[ "$rest" -eq 0 ] && [ "$second_rc" -eq 0 ]
