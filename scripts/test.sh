#!/usr/bin/env bash
# The Go tests of `make test`, in two processes at once: the Kubernetes
# end-to-end tests (internal/e2e's TestKubernetes*: they wait mostly on the
# test cluster's pods) beside everything else. One `go test ./...` ran the
# e2e package's tests one after another, past an hour and a quarter; the
# Kubernetes ones use their own engine and image, so they share nothing
# the others build or remove.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
timeout=${GOTEST_TIMEOUT:-75m}
# By their exact names: other packages have TestKubernetes* tests of their own.
kube="^($(grep -ho '^func TestKubernetes[A-Za-z0-9_]*' internal/e2e/*_test.go | sed 's/^func //' | sort -u | paste -sd '|'))\$"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# TestMain's set-up (the binary, the image) once before both, so the two
# processes do not build the image at the same time.
"$GO" test -count=1 -run '^$' ./internal/e2e || exit 1

AIRLOCK_E2E_SHARED=1 "$GO" test -count=1 -timeout "$timeout" -run "$kube" ./internal/e2e >"$logs/kube" 2>&1 &
kube_pid=$!
AIRLOCK_E2E_SHARED=1 "$GO" test -count=1 -timeout "$timeout" -skip "$kube" ./...
rest=$?
echo "--- the Kubernetes end-to-end tests (go test -run '$kube' ./internal/e2e)"
wait "$kube_pid"
kube_rc=$?
cat "$logs/kube"
# The projects' images the e2e tests built (TestMain leaves them to this
# script when AIRLOCK_E2E_SHARED is set: the other process may be using them).
for cli in docker podman; do
	command -v "$cli" >/dev/null || continue
	"$cli" image ls --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | sed 's|^localhost/||' |
		grep '^airlock-project-repo:' | xargs -r "$cli" rmi >/dev/null 2>&1 || true
done
[ "$rest" -eq 0 ] && [ "$kube_rc" -eq 0 ]
