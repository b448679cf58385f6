#!/usr/bin/env bash
# Prepares a Debian 12 machine for building and testing airlock: installs
# what is missing (git, make, ca-certificates, debootstrap, busybox-static
# for the engine test suite, Debian's docker.io when no engine answers, and
# Debian's podman) and starts dockerd when nothing is listening, and Podman's
# API services, rootful and rootless (as the test user airlock-test, which it
# creates); installs gVisor (Debian's runsc) and registers it with dockerd as
# the runtime "runsc". Safe to run again: when all is present it only checks,
# in about a second.
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

# Node.js and npm: the tests drive the real Claude Code CLI on the host too.
command -v npm >/dev/null || missing+=(nodejs npm)

if [ "${#missing[@]}" -gt 0 ]; then
	log "installing ${missing[*]}"
	"${SUDO[@]}" apt-get update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Claude Code version the default image pins (internal/config), also on
# the host for the tests that run the CLI against the scripted model server.
here=$(cd "$(dirname "$0")/.." && pwd)
claude_version=$(sed -n 's/.*DefaultClaudeVersion *= *"\([^"]*\)".*/\1/p' "$here/internal/config/config.go" | head -n 1)
if [ -n "$claude_version" ] && ! claude --version 2>/dev/null | grep -q "^$claude_version "; then
	log "installing Claude Code $claude_version on the host (npm)"
	"${SUDO[@]}" env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
		npm install -g --no-fund --no-audit --loglevel=error "@anthropic-ai/claude-code@$claude_version" >/dev/null
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
	pid=$("${SUDO[@]}" sh -c 'PATH="$PATH:/usr/sbin:/sbin"; nohup dockerd >/var/log/airlock-dockerd.log 2>&1 </dev/null & echo $!')
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

# Podman's settings for airlock, in a drop-in that leaves the admin's own
# containers.conf alone: explicit ulimits (Podman's defaults exceed the hard
# limits of many hosts, and then no container starts), cgroupfs and a file
# for events (no systemd here), runc, netavark.
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
[network]
network_backend = \"netavark\""
if [ "$(cat "$podman_conf" 2>/dev/null)" != "$podman_settings" ]; then
	log "writing $podman_conf"
	"${SUDO[@]}" mkdir -p "$(dirname "$podman_conf")"
	printf '%s\n' "$podman_settings" | "${SUDO[@]}" tee "$podman_conf" >/dev/null
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

# Rootful Podman's API service, on its usual socket; no systemd, so in the
# background, detached from this script.
if ! podman_answers /run/podman/podman.sock; then
	log "starting Podman's API service on /run/podman/podman.sock (log: /var/log/airlock-podman.log)"
	"${SUDO[@]}" mkdir -p /run/podman
	"${SUDO[@]}" sh -c 'nohup podman system service --time=0 unix:///run/podman/podman.sock >/var/log/airlock-podman.log 2>&1 </dev/null &'
	wait_podman /run/podman/podman.sock /var/log/airlock-podman.log
fi

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
rootless_sock=/run/user/$test_uid/podman/podman.sock
if ! podman_answers "$rootless_sock"; then
	log "starting $test_user's rootless Podman API service on $rootless_sock (log: /var/log/airlock-podman-rootless.log)"
	"${SUDO[@]}" install -d -m 0700 -o "$test_user" -g "$test_user" "/run/user/$test_uid"
	"${SUDO[@]}" install -m 0644 -o "$test_user" -g "$test_user" /dev/null /var/log/airlock-podman-rootless.log
	"${SUDO[@]}" runuser -u "$test_user" -- sh -c "cd / && export XDG_RUNTIME_DIR=/run/user/$test_uid HOME=$(getent passwd "$test_user" | cut -d: -f6) &&
		nohup podman system service --time=0 unix://$rootless_sock >>/var/log/airlock-podman-rootless.log 2>&1 </dev/null &"
	wait_podman "$rootless_sock" /var/log/airlock-podman-rootless.log
fi

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
log "ready: $(go version | cut -d' ' -f3), git $(git --version | cut -d' ' -f3), engine $("${SUDO[@]}" docker version -f '{{.Server.Version}}' 2>/dev/null), podman $(podman --version | cut -d' ' -f3) (rootful, and rootless as $test_user)"
