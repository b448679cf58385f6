#!/usr/bin/env bash
# Prepares a Debian 12 machine for building and testing airlock: installs
# what is missing (git, make, ca-certificates, debootstrap, busybox-static
# for the engine test suite, and Debian's docker.io when no engine answers)
# and starts dockerd when nothing is listening. Safe to run again: when all is
# present it only checks, in well under a second.
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
for pkg in git make ca-certificates debootstrap busybox-static tmux; do
	installed "$pkg" || missing+=("$pkg")
done
if ! engine_answers && ! { have dockerd && command -v docker >/dev/null; }; then
	missing+=(docker.io)
fi

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
log "ready: $(go version | cut -d' ' -f3), git $(git --version | cut -d' ' -f3), engine $("${SUDO[@]}" docker version -f '{{.Server.Version}}' 2>/dev/null)"
