#!/usr/bin/env bash
# The Go tests of `make test`, in two processes at once. One `go test ./...`
# ran internal/e2e's tests one after another, past an hour and a quarter, so
# a second process takes a share of them: the Kubernetes end-to-end tests
# (they wait mostly on the test cluster's pods) and the hostile-sandbox ones.
# The first process runs everything else.
#
# Each process writes its events (go test -json, through gotestsum) to a
# file, and prints go test's usual output; at the end the slowest tests of
# each are listed, to balance the two by.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
timeout=${GOTEST_TIMEOUT:-75m}

# The names of internal/e2e's tests that begin with $1.
e2e_tests() { grep -ho "^func Test$1[A-Za-z0-9_]*" internal/e2e/*_test.go | sed 's/^func //' | sort -u; }
# By their exact names: other packages have tests named alike.
second=$( (e2e_tests Kubernetes; e2e_tests Hostile) | paste -sd '|')
prepare=TestImageBuildOnEngines
skip="^($second|$prepare)\$"
# -skip applies to every package: a test elsewhere with one of these exact
# names would never run.
clash=$(grep -rhoE --include='*_test.go' --exclude-dir=e2e "^func ($second|$prepare)\(" internal cmd scripts | sort -u)
if [ -n "$clash" ]; then
	echo "scripts/test.sh: tests outside internal/e2e share names with e2e tests it skips elsewhere: $clash" >&2
	exit 1
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
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

# TestMain's set-up (the binary, the image) and the images on the other
# engines, once before both, so the two processes never build an image at
# the same time.
stamp "the engines' images ($prepare)"
gotest prepare -run "^$prepare\$" ./internal/e2e || exit 1

stamp "two processes: the Kubernetes and hostile-sandbox end-to-end tests, and the rest"
AIRLOCK_E2E_SHARED=1 gotest second -run "^($second)\$" ./internal/e2e >"$logs/second.out" 2>&1 &
second_pid=$!
AIRLOCK_E2E_SHARED=1 gotest rest -skip "$skip" ./...
rest=$?
stamp "the rest ended (exit $rest)"
wait "$second_pid"
second_rc=$?
stamp "the Kubernetes and hostile-sandbox end-to-end tests (go test -run '^($second)\$' ./internal/e2e) ended (exit $second_rc):"
cat "$logs/second.out"
slowest rest
slowest second
# The projects' images the e2e tests built (TestMain leaves them to this
# script when AIRLOCK_E2E_SHARED is set: the other process may be using them).
for cli in docker podman; do
	command -v "$cli" >/dev/null || continue
	"$cli" image ls --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | sed 's|^localhost/||' |
		grep '^airlock-project-repo:' | xargs -r "$cli" rmi >/dev/null 2>&1 || true
done
[ "$rest" -eq 0 ] && [ "$second_rc" -eq 0 ]
