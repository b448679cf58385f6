#!/usr/bin/env bash
# Benchmarks. Start-up: `airlock run -d` (until the agent's process runs in its
# container) against a bare `docker run --rm IMAGE true` on the same image,
# measured in the same go test run; prints both and their ratio (target <= 1.5).
set -euo pipefail
cd "$(dirname "$0")/.."

# Every section tees its benchmarks' output to stderr; a copy of stderr is
# what scripts/benchreport reads at the end to print the one table, write
# bench.json and regenerate README's "Measured here" table
# (BENCH_README=0 leaves the README alone).
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
exec 2> >(tee -a "$raw" >&2)
out=$(go test -run '^$' -bench '^BenchmarkStartup$' -benchtime "${BENCHTIME:-10x}" -count 1 ./internal/e2e/ | tee /dev/stderr)
awk '
	/BenchmarkStartup\/bare/    { bare = $3 }
	/BenchmarkStartup\/airlock/ { air = $3 }
	END {
		if (!bare || !air) { print "bench: no figures"; exit 1 }
		printf "start-up: bare docker run %.0f ms, airlock run -d %.0f ms, ratio %.2fx (target <= 1.5x)\n", bare/1e6, air/1e6, air/bare
	}' <<<"$out"

# Egress benchmark: in one run, 100 MiB downloads over HTTP and HTTPS (a
# CONNECT tunnel) taken in turn, round after round, four ways: directly from a
# container on a test network, from an agent's sandbox through its relay and
# airlock's proxy, and through Debian's squid and tinyproxy (plain forward
# proxies in containers on the same network); then small requests. Prints each
# figure, the per-round ratios against direct (median, min-max), and the
# targets: airlock >= 0.9x direct and ahead of squid and tinyproxy, added
# latency < 2 ms; and the proxy's memory.
out=$(go test -run '^$' -bench '^BenchmarkEgress$' -benchtime 1x -count 1 ./internal/e2e/ | tee /dev/stderr)
awk '
	/^BenchmarkEgress/ { for (i = 3; i < NF; i += 2) v[$(i+1)] = $i; found = 1 }
	function verdict(ok) { return ok ? "met" : "MISSED" }
	END {
		if (!found) { print "bench: no egress figures"; exit 1 }
		n = split("http HTTP https HTTPS", s, " ")
		for (i = 1; i < n; i += 2) {
			k = s[i]; name = s[i+1]
			a = v[k "-ratio"]; sq = v["squid-" k "-ratio"]; tp = v["tinyproxy-" k "-ratio"]
			printf "egress %-5s direct %5.0f MiB/s | airlock %5.0f MiB/s %.2fx (%.2f-%.2f) | squid %5.0f MiB/s %.2fx (%.2f-%.2f) | tinyproxy %5.0f MiB/s %.2fx (%.2f-%.2f)\n", \
				name, v["direct-" k "-MiB/s"], v["proxied-" k "-MiB/s"], a, v[k "-ratio-min"], v[k "-ratio-max"], \
				v["squid-" k "-MiB/s"], sq, v["squid-" k "-ratio-min"], v["squid-" k "-ratio-max"], \
				v["tinyproxy-" k "-MiB/s"], tp, v["tinyproxy-" k "-ratio-min"], v["tinyproxy-" k "-ratio-max"]
			printf "egress %-5s targets: airlock >= 0.9x direct: %s; ahead of squid: %s; ahead of tinyproxy: %s\n", \
				name, verdict(a >= 0.9), verdict(a > sq), verdict(a > tp)
		}
		printf "egress latency, new connection per request: direct %.2f ms, proxied %.2f ms, added %.2f ms (target < 2 ms)\n", v["direct-new-conn-ms"], v["proxied-new-conn-ms"], v["added-new-conn-ms"]
		printf "egress latency, kept-alive connection: direct %.2f ms, proxied %.2f ms, added %.2f ms (target < 2 ms)\n", v["direct-keepalive-ms"], v["proxied-keepalive-ms"], v["added-keepalive-ms"]
		printf "egress proxy memory: peak %.1f MiB (cgroup, page cache included), resident %.1f MiB\n", v["proxy-peak-MiB"], v["proxy-rss-MiB"]
	}' <<<"$out"

# gVisor (docs/gvisor.md): a whole minimal run (one model turn, start to
# harvested result) under runsc against the same agent in a bare
# `docker run --runtime runsc` of the same image, runc's figures alongside;
# prints the ratios (target <= 1.5x).
out=$(go test -run '^$' -bench '^BenchmarkGVisorRun$' -benchtime "${GVISOR_BENCHTIME:-3x}" -count 1 ./internal/e2e/ | tee /dev/stderr)
awk '
	/BenchmarkGVisorRun\/bare-runc/     { br = $3 }
	/BenchmarkGVisorRun\/bare-runsc/    { bs = $3 }
	/BenchmarkGVisorRun\/airlock-runc/  { ar = $3 }
	/BenchmarkGVisorRun\/airlock-runsc/ { as = $3 }
	END {
		if (!br || !bs || !ar || !as) { print "bench: no gVisor figures"; exit 1 }
		printf "gVisor whole run: bare docker run --runtime runsc %.1f s, airlock run --runtime runsc %.1f s, ratio %.2fx (target <= 1.5x)\n", bs/1e9, as/1e9, as/bs
		printf "runc whole run:   bare docker run %.1f s, airlock run %.1f s, ratio %.2fx; runsc/runc: bare %.2fx, airlock %.2fx\n", br/1e9, ar/1e9, ar/br, bs/br, as/ar
	}' <<<"$out"

# Podman (docs/engines.md): a whole minimal run (one model turn, from
# `airlock run` to its summary) against the same agent in a bare `podman run`
# of the same image, on rootful Podman and on rootless Podman as the test
# user; prints the ratios (target <= 1.5x).
out=$(go test -run '^$' -bench '^BenchmarkPodmanRun$' -benchtime "${PODMAN_BENCHTIME:-3x}" -count 1 ./internal/e2e/ | tee /dev/stderr)
awk '
	/BenchmarkPodmanRun\/bare-rootful/     { bf = $3 }
	/BenchmarkPodmanRun\/airlock-rootful/  { af = $3 }
	/BenchmarkPodmanRun\/bare-rootless/    { bl = $3 }
	/BenchmarkPodmanRun\/airlock-rootless/ { al = $3 }
	/BenchmarkPodmanRun\/gvisor-bare-rootful/     { gbf = $3 }
	/BenchmarkPodmanRun\/gvisor-airlock-rootful/  { gaf = $3 }
	/BenchmarkPodmanRun\/gvisor-bare-rootless/    { gbl = $3 }
	/BenchmarkPodmanRun\/gvisor-airlock-rootless/ { gal = $3 }
	END {
		if (!bf || !af || !bl || !al) { print "bench: no Podman figures"; exit 1 }
		printf "Podman whole run, rootful:  bare podman run %.1f s, airlock run %.1f s, ratio %.2fx (target <= 1.5x)\n", bf/1e9, af/1e9, af/bf
		printf "Podman whole run, rootless: bare podman run %.1f s, airlock run %.1f s, ratio %.2fx (target <= 1.5x)\n", bl/1e9, al/1e9, al/bl
		if (gbf && gaf && gbl && gal) {
			printf "Podman+gVisor, rootful:  bare podman --runtime runsc run %.1f s, airlock run --runtime runsc %.1f s, ratio %.2fx; runsc/runc: airlock %.2fx\n", gbf/1e9, gaf/1e9, gaf/gbf, gaf/af
			printf "Podman+gVisor, rootless: bare podman --runtime runsc run %.1f s, airlock run --runtime runsc %.1f s, ratio %.2fx; runsc/runc: airlock %.2fx\n", gbl/1e9, gal/1e9, gal/gbl, gal/al
		}
	}' <<<"$out"

# Incus (docs/engines.md): a whole minimal run (one model turn, from
# `airlock run --engine incus` to its summary) against the same agent in
# Incus' own bare run of the same image (an instance made and started
# through its API, whose init is the agent, until it stops); and start-up
# against Docker's: `airlock run -d` on each engine, and each engine's bare
# start of the image running `true` (target: Incus within 2x of Docker).
out=$(go test -run '^$' -bench '^BenchmarkIncusRun$' -benchtime "${INCUS_BENCHTIME:-3x}" -count 1 ./internal/e2e/ | tee /dev/stderr)
awk '
	/BenchmarkIncusRun\/bare-[0-9]/             { b = $3 }
	/BenchmarkIncusRun\/airlock-[0-9]/          { a = $3 }
	/BenchmarkIncusRun\/airlock-before-[0-9]/   { ab = $3 }
	/BenchmarkIncusRun\/start-bare-docker/      { sbd = $3 }
	/BenchmarkIncusRun\/start-bare-incus/       { sbi = $3 }
	/BenchmarkIncusRun\/start-airlock-docker/   { sad = $3 }
	/BenchmarkIncusRun\/start-airlock-incus/    { sai = $3 }
	END {
		if (!b || !a || !sbd || !sbi || !sad || !sai) { print "bench: no Incus figures"; exit 1 }
		printf "Incus whole run: bare Incus instance %.1f s, airlock run %.1f s, ratio %.2fx (target <= 1.5x)\n", b/1e9, a/1e9, a/b
		if (ab) printf "Incus whole run of AIRLOCK_BENCH_BEFORE: %.1f s, ratio %.2fx\n", ab/1e9, ab/b
		printf "Incus start-up:  airlock run -d %.0f ms against Docker %.0f ms, ratio %.2fx (target <= 2x); bare start of `true`: Incus %.0f ms, Docker %.0f ms, ratio %.2fx\n", sai/1e6, sad/1e6, sai/sad, sbi/1e6, sbd/1e6, sbi/sbd
	}' <<<"$out"

# Kubernetes (docs/kubernetes.md), on the test cluster (scripts/k8s-cluster.sh
# up): in interleaved rounds, start-up (`airlock run -d --engine kubernetes`
# until the agent's process runs in its pod) against a bare pod of the same
# image running `true`, made through the API server, until it has Succeeded;
# and a whole one-turn run against a bare pod running the same agent until it
# has Succeeded. Medians (target: start-up under 1 s with a warm pool, which
# `warm` does not make yet).
out=$(go test -run '^$' -bench '^BenchmarkKubernetesRun$' -benchtime "${K8S_BENCHTIME:-3x}" -count 1 -timeout 20m ./internal/e2e/ | tee /dev/stderr)
awk '
	/^BenchmarkKubernetesRun/ { for (i = 3; i < NF; i += 2) v[$(i+1)] = $i; found = 1 }
	END {
		if (!found) { print "bench: no Kubernetes figures"; exit 1 }
		printf "Kubernetes start-up: airlock run -d %.0f ms, bare pod `true` %.0f ms, ratio %.2fx (target < 1000 ms with a warm pool: %s)\n", v["start-airlock-ms"], v["start-bare-ms"], v["start-ratio"], v["start-airlock-ms"] < 1000 ? "met" : "MISSED, no warm pool yet"
		printf "Kubernetes whole run: bare pod agent %.0f ms, airlock run %.0f ms, ratio %.2fx\n", v["bare-ms"], v["airlock-ms"], v["ratio"]
	}' <<<"$out"

# Cold start (README "Quick start"): the default agent image built from
# scratch with the base present and a warm package cache, as `make demo`'s
# agent-image stage does on a new machine (target < 60 s). `make demo` prints
# every stage's time itself, and a second `make demo` repeats only the demo.
out=$(go test -run '^$' -bench '^BenchmarkAgentImageCold$' -benchtime 1x -count 1 ./internal/image/ | tee /dev/stderr)
awk '
	/^BenchmarkAgentImageCold/ { for (i = 3; i < NF; i += 2) v[$(i+1)] = $i; found = 1 }
	END {
		if (!found) { print "bench: no cold-start figures"; exit 1 }
		printf "cold start: agent image from scratch (base present, warm package cache) %.1f s (target < 60 s)\n", v["agent-image-s"]
	}' <<<"$out"

# Whole run (issue 9, target 1): one model turn, attached, from `airlock run`
# to its printed summary, against the same agent in a bare `docker run --rm`
# of the same image; pairs interleaved, medians (target <= 1.2x). The
# start-up figure above (`run -d` to the agent's process) is not this one.
out=$(go test -run '^$' -bench '^BenchmarkWholeRun$' -benchtime "${WHOLERUN_BENCHTIME:-7x}" -count 1 ./internal/e2e/ | tee /dev/stderr)
awk '
	/^BenchmarkWholeRun/ { for (i = 3; i < NF; i += 2) v[$(i+1)] = $i; found = 1 }
	END {
		if (!found) { print "bench: no whole-run figures"; exit 1 }
		printf "whole run: bare docker run --rm %.0f ms, airlock run %.0f ms, ratio %.2fx (target <= 1.2x; medians of interleaved pairs)\n", v["bare-ms"], v["airlock-ms"], v["ratio"]
	}' <<<"$out"

# Scale: 20 one-turn runs started at once, two ways (20 `airlock run -d`
# together then one `airlock wait` on them all; one attached batch `airlock
# run T1 ... T20`; every run must succeed) against 20 bare `docker run --rm`
# of the same agent started at once; and airlock's own resident memory per
# run while they are in flight (proxy + relay + watcher or batch; target
# <= 30 MiB), VmRSS and PSS (shared binary pages split).
out=$(go test -run '^$' -bench '^BenchmarkScale$' -benchtime "${SCALE_BENCHTIME:-1x}" -count 1 -timeout 30m ./internal/e2e/ | tee /dev/stderr)
awk '
	/^BenchmarkScale\/bare/    { for (i = 3; i < NF; i += 2) bare[$(i+1)] = $i }
	/^BenchmarkScale\/airlock/ { for (i = 3; i < NF; i += 2) air[$(i+1)] = $i; found = 1 }
	/^BenchmarkScale\/batch/   { for (i = 3; i < NF; i += 2) bat[$(i+1)] = $i }
	function verdict(ok) { return ok ? "met" : "MISSED" }
	END {
		if (!found || !bare["wall-ms"]) { print "bench: no scale figures"; exit 1 }
		printf "scale, 20 runs at once: bare docker run %.1f s; airlock run -d + wait %.1f s, ratio %.2fx; batch %.1f s, ratio %.2fx\n", bare["wall-ms"]/1e3, air["wall-ms"]/1e3, air["airlock/bare"], bat["wall-ms"]/1e3, bat["airlock/bare"]
		printf "scale memory per run, run -d (proxy + relay + watcher): VmRSS peak %.1f MiB (target <= 30 MiB: %s), mean %.1f MiB; PSS peak %.1f MiB; one run at most %.1f MiB; airlock wait %.1f MiB\n", air["peak-MiB/run"], verdict(air["peak-MiB/run"] <= 30), air["mean-MiB/run"], air["pss-peak-MiB/run"], air["one-run-peak-MiB"], air["wait-MiB"]
		printf "scale memory per run, batch (proxy + relay + the batch / 20): VmRSS peak %.1f MiB (target <= 30 MiB: %s), mean %.1f MiB; PSS peak %.1f MiB\n", bat["peak-MiB/run"], verdict(bat["peak-MiB/run"] <= 30), bat["mean-MiB/run"], bat["pss-peak-MiB/run"]
	}' <<<"$out"

# Logs (issue 9, target 2): `airlock logs RUN` against `jq -c .` on the same
# generated stream-json transcript, both to /dev/null, at 25 and 100 MiB
# (target: ratio <= 1.0, peak RSS the same at both sizes); and `logs -f`
# following a transcript that grows at 10 MiB/s (target: lag about one poll).
out=$(go test -run '^$' -bench '^BenchmarkLogs$' -benchtime 1x -count 1 ./internal/e2e/ | tee /dev/stderr)
awk '
	/^BenchmarkLogs\// {
		split($1, n, "/"); size = n[2]; sub(/-[0-9]+$/, "", size)
		for (i = 3; i < NF; i += 2) v[$(i+1)] = $i
		printf "logs %s: jq -c . %.2f s, airlock logs %.2f s, ratio %.2fx (target <= 1.0x); peak RSS jq %.0f MiB, airlock %.0f MiB\n", size, v["jq-s"], v["airlock-s"], v["ratio"], v["jq-rss-MiB"], v["airlock-rss-MiB"]
		found = 1
	}
	END { if (!found) { print "bench: no logs figures"; exit 1 } }' <<<"$out"
out=$(go test -run '^$' -bench '^BenchmarkFollow$' -benchtime 1x -count 1 ./internal/transcript/ | tee /dev/stderr)
awk '
	/^BenchmarkFollow/ { for (i = 3; i < NF; i += 2) v[$(i+1)] = $i; found = 1 }
	END {
		if (!found) { print "bench: no follow figures"; exit 1 }
		printf "logs -f at %.1f MiB/s: %.2f MiB behind when the writer stops, caught up %.0f ms later (target: about one 100 ms poll)\n", v["write-MiB/s"], v["lag-MiB"], v["catchup-ms"]
	}' <<<"$out"

# Secret scanning (docs/egress.md): a typical 2 KiB plain-HTTP header block
# through the whole scan (target < 100 µs), against the held-secret scan
# alone, and the first 256 KiB of a body.
out=$(go test -run '^$' -bench '^BenchmarkSecretScan$' -benchtime 1x -count 1 ./internal/egress/ | tee /dev/stderr)
awk '
	/^BenchmarkSecretScan/ { for (i = 3; i < NF; i += 2) v[$(i+1)] = $i; found = 1 }
	END {
		if (!found) { print "bench: no secret-scan figures"; exit 1 }
		printf "secret scan, 2 KiB header block: %.1f us (%d rules; target < 100 us), held secrets only %.1f us, ratio %.2fx; 256 KiB body %.2f ms\n", v["headers-us"], v["rules"], v["held-only-us"], v["headers-us"]/v["held-only-us"], v["body-256KiB-ms"]
	}' <<<"$out"

# The table of everything above, bench.json, and README's table from it.
sleep 0.2 # the stderr copy catches up
readme=README.md
[ "${BENCH_README:-1}" = 0 ] && readme=
go run ./scripts/benchreport -json bench.json ${readme:+-readme "$readme"} -commit "$(git rev-parse --short HEAD 2>/dev/null || true)" "$raw"
