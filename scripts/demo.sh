#!/usr/bin/env bash
# `make demo`: a new user's whole path, stage by stage, each timed: the
# engines (scripts/setup.sh), airlock itself, the base image, the agent image
# and the demo run. Every stage is skipped when its result is already there,
# so a second `make demo` repeats only the demo; the table at the end says
# which stages did work and how long each took.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

names=() times=() notes=()
now() { date +%s.%N; }
record() { names+=("$1"); times+=("$(awk -v a="$2" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }')"); notes+=("$3"); }

t=$(now)
setup_log=$(mktemp)
trap 'rm -f "$setup_log"' EXIT
scripts/setup.sh 2> >(tee "$setup_log" >&2)
note="already set up"
grep -vqE '^setup: (ready|warning)' "$setup_log" && note="installed, made or started what was missing"
record "engines" "$t" "$note"

t=$(now)
${MAKE:-make} -s build
installed=/usr/local/bin/airlock
if ! cmp -s bin/airlock "$installed"; then
	"${SUDO[@]}" install -D -m 0755 bin/airlock "$installed"
	note="built and installed"
else
	note="up to date"
fi
record "airlock" "$t" "$note"

# `image build` makes the base (when [image] base = "bootstrap") and the
# agent image, and says how long each took; neither when it exists.
t=$(now)
image_log=$(mktemp)
trap 'rm -f "$setup_log" "$image_log"' EXIT
airlock image build 2> >(tee "$image_log" >&2)
sleep 0.1 # let tee finish
total=$(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
base=$(sed -n 's/^Base image .*: made in \([0-9.]*\) s$/\1/p' "$image_log")
agent=$(sed -n 's/^Agent image .*: built in \([0-9.]*\) s$/\1/p' "$image_log")
names+=("base image"); notes+=("${base:+made}${base:-already there (or pulled with the agent image)}")
times+=("${base:-0.0} s")
names+=("agent image")
if [ -n "$agent" ]; then
	times+=("$agent s"); notes+=("built (target < 60 s with a warm package cache)")
else
	times+=("$total s"); notes+=("already there")
fi

t=$(now)
airlock demo
record "demo" "$t" "the whole pipeline"

echo
echo "make demo, stage by stage:"
for i in "${!names[@]}"; do
	printf "  %-12s %9s  %s\n" "${names[$i]}" "${times[$i]}" "${notes[$i]}"
done
