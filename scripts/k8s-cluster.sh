#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, for airlock's kubernetes
# engine tests (docs/kubernetes.md). Needs root.
#
#   scripts/k8s-cluster.sh up          start it (builds the binaries once)
#   scripts/k8s-cluster.sh down        stop everything it started (the build cache stays)
#   scripts/k8s-cluster.sh status      say what runs; exit 0 only when the cluster is up
#   scripts/k8s-cluster.sh load IMG... copy Docker images into the cluster's containerd
#                                      (or push them to the test registry, below)
#   scripts/k8s-cluster.sh probe       check that NetworkPolicy is enforced (pods dial pods)
#   scripts/k8s-cluster.sh build       only build the binaries into the cache
#
# What it is made of, all on this host, nothing from a registry:
# - kube-apiserver, kube-controller-manager, kube-scheduler, kubelet (and
#   kubectl, for people) built from the k8s.io/kubernetes Go module, cached
#   in /var/cache/airlock-k8s/$K8S_VERSION/bin;
# - etcd (Debian's etcd-server) on loopback ports 23790/23800, which nothing
#   else here uses;
# - a containerd of its own (Debian's binary; config, root, state and socket
#   under /var/lib/airlock-k8s and /run/airlock-k8s), so Docker's containerd
#   is never touched; its sandbox (pause) image is built here from a few lines
#   of Go, as there is no registry;
# - Debian's CNI plugins (bridge airk8s0, host-local, loopback, portmap);
# - NetworkPolicy enforcement by sigs.k8s.io/kube-network-policies (see
#   start_netpol for how it runs on this kernel);
# - an image registry, plain HTTP on $REGISTRY_ADDR (loopback), which the
#   containerd pulls from: scripts/testregistry, go-containerregistry's
#   registry, built from this repository (see start_registry);
# - a dynamic volume provisioner, airlock-provisioner (scripts/k8s-provisioner,
#   built on sigs.k8s.io/sig-storage-lib-external-provisioner), and its
#   StorageClass airlock-local, the default one (see start_provisioner).
# There is no kube-proxy and no cluster DNS: Services get no ClusterIP
# routing; pods talk to pod IPs (airlock's engine does).
#
# The host's other engines keep working: every iptables rule this script adds
# lives in chains named AIRLOCK-K8S-*, and `down` removes exactly those.
#
# State: /var/lib/airlock-k8s (kubeconfig, certificates, etcd, containerd,
# kubelet); pid files and sockets: /run/airlock-k8s; logs:
# /var/log/airlock-k8s/*.log.
set -euo pipefail

K8S_VERSION=v1.33.13
STAGING_VERSION=v0.33.13
NETPOL_VERSION=v0.8.0
CACHE=/var/cache/airlock-k8s/$K8S_VERSION
BIN=$CACHE/bin
STATE=/var/lib/airlock-k8s
RUN=/run/airlock-k8s
LOGS=/var/log/airlock-k8s
PKI=$STATE/pki
KUBECONFIG_ADMIN=$STATE/kubeconfig
CONTAINERD_SOCK=$RUN/containerd.sock
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
BRIDGE=airk8s0
ETCD_CLIENT=127.0.0.1:23790
ETCD_PEER=127.0.0.1:23800
API_PORT=6443
NETPOL_METRICS=127.0.0.1:29080
NFQUEUE=100
PAUSE_IMAGE=localhost/airlock-k8s/pause:1
REGISTRY_ADDR=127.0.0.1:23500
REGISTRY_DIR=$STATE/registry
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CNI_BIN=/usr/lib/cni
PROVISIONER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/k8s-provisioner
VOLUMES=$STATE/volumes
STORAGE_CLASS=airlock-local

log() { printf 'k8s-cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it runs containerd, the kubelet and iptables)"

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# The node's address: the one on the interface of the default route.
node_ip() {
	local dev
	dev=$(ip -4 route show default | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}')
	[ -n "$dev" ] || die "no default route: cannot tell the node's address"
	ip -4 -o addr show dev "$dev" | awk '{split($4, a, "/"); print a[1]; exit}'
}
node_name() { hostname | tr 'A-Z_' 'a-z-'; }

# ---------------------------------------------------------------- the build

# k8s.io/kubernetes is not meant to be a dependency: its go.mod requires each
# staging module (k8s.io/api, client-go, ...) at v0.0.0, replaced by
# ./staging. A throwaway module requires it and pins each of those to the
# matching published v0.x; code-generator and sample-apiserver are not
# published at that version here and are not built, so any v0.33 does.
build() {
	local missing=() c
	for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-network-policies pause; do
		[ -x "$BIN/$c" ] || missing+=("$c")
	done
	build_provisioner
	[ ${#missing[@]} -eq 0 ] && return 0
	command -v go >/dev/null || die "Go is needed to build ${missing[*]}"
	log "building ${missing[*]} into $BIN (a cold build takes about 10 minutes on 2 cores)"
	mkdir -p "$BIN" "$CACHE/src" "$CACHE/netpol" "$CACHE/pause"
	local staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go
		cloud-provider cluster-bootstrap component-base component-helpers controller-manager
		cri-api cri-client csi-translation-lib dynamic-resource-allocation endpointslice
		externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler
		kubectl kubelet metrics mount-utils pod-security-admission)
	if [ ! -s "$CACHE/src/go.mod" ]; then
		{
			printf 'module airlock.local/k8sbuild\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\n' "$K8S_VERSION"
			for c in "${staging[@]}"; do printf 'replace k8s.io/%s => k8s.io/%s %s\n' "$c" "$c" "$STAGING_VERSION"; done
			printf 'replace k8s.io/code-generator => k8s.io/code-generator v0.33.0\n'
			printf 'replace k8s.io/sample-apiserver => k8s.io/sample-apiserver v0.33.5\n'
		} >"$CACHE/src/go.mod"
	fi
	# Adds what the commands need to go.sum (quick once it is there).
	if [[ " ${missing[*]} " == *" kube"* ]]; then
		(cd "$CACHE/src" && go get k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kubectl}@"$K8S_VERSION")
	fi
	# The version the binaries report (the apiserver and kubelet compare them).
	local ld="-s -w" p
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=33 -X $p.gitTreeState=clean"
		ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	for c in "${missing[@]}"; do
		case $c in
		kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kubectl)
			log "building $c"
			(cd "$CACHE/src" && CGO_ENABLED=0 go build -trimpath -tags providerless -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c")
			mv "$BIN/$c.tmp" "$BIN/$c" ;;
		esac
	done
	if [[ " ${missing[*]} " == *" kube-network-policies "* ]]; then
		log "building kube-network-policies $NETPOL_VERSION"
		if [ ! -s "$CACHE/netpol/go.sum" ]; then
			printf 'module airlock.local/netpolbuild\n\ngo 1.24\n' >"$CACHE/netpol/go.mod"
			(cd "$CACHE/netpol" && go get "sigs.k8s.io/kube-network-policies/cmd@$NETPOL_VERSION")
		fi
		(cd "$CACHE/netpol" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/kube-network-policies.tmp" sigs.k8s.io/kube-network-policies/cmd)
		mv "$BIN/kube-network-policies.tmp" "$BIN/kube-network-policies"
	fi
	if [[ " ${missing[*]} " == *" pause "* ]]; then
		build_pause
	fi
}

# The provisioner, from its own module beside this script (its go.sum pins
# what the Go proxy serves): built again when its source is newer.
build_provisioner() {
	local bin=$BIN/airlock-provisioner
	if [ -x "$bin" ] && [ ! "$PROVISIONER_SRC/main.go" -nt "$bin" ] && [ ! "$PROVISIONER_SRC/go.sum" -nt "$bin" ]; then
		return 0
	fi
	command -v go >/dev/null || die "Go is needed to build airlock-provisioner"
	log "building airlock-provisioner"
	mkdir -p "$BIN"
	(cd "$PROVISIONER_SRC" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin.tmp" .)
	mv "$bin.tmp" "$bin"
}

# The pod sandbox's process: PID 1 of each pod, which only waits for a
# signal and reaps what it inherits. Built here, as there is no registry to
# pull registry.k8s.io/pause from. The same binary is the network probe of
# `probe`.
build_pause() {
	log "building the pause image"
	local d=$CACHE/pause
	cat >"$d/go.mod" <<'EOF'
module airlock.local/pause

go 1.24
EOF
	cat >"$d/main.go" <<'EOF'
// pause is PID 1 of a pod sandbox: it holds the pod's namespaces, reaps the
// processes it inherits, and exits on SIGINT or SIGTERM.
//
// With arguments it is the cluster's network probe instead (the same tiny
// image serves both): "pause listen ADDR" accepts TCP connections on ADDR
// and closes them; "pause dial ADDR" waits 2 seconds, then exits 0 when a TCP
// connection to ADDR opens within 3 seconds, 1 when it does not.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "listen" {
		ln, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			c.Close()
		}
	}
	if len(os.Args) == 3 && os.Args[1] == "dial" {
		// The policy daemon knows a pod by the IP in its status, which
		// the kubelet reports a moment after the sandbox starts: before
		// that, its packets are judged as a stranger's.
		time.Sleep(2 * time.Second)
		c, err := net.DialTimeout("tcp", os.Args[2], 3*time.Second)
		if err != nil {
			fmt.Println("refused:", err)
			os.Exit(1)
		}
		c.Close()
		fmt.Println("connected")
		os.Exit(0)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
EOF
	(cd "$d" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$d/pause" .)
	# An OCI image layout holding one layer with /pause, as `ctr images
	# import` takes it.
	local img=$d/image root=$d/rootfs
	rm -rf "$img" "$root"
	mkdir -p "$img/blobs/sha256" "$root"
	install -m 0755 "$d/pause" "$root/pause"
	tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$d/layer.tar" pause
	local layer layer_size config config_size manifest manifest_size
	layer=$(sha256sum "$d/layer.tar" | cut -d' ' -f1)
	layer_size=$(stat -c %s "$d/layer.tar")
	mv "$d/layer.tar" "$img/blobs/sha256/$layer"
	printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
		"$layer" >"$d/config.json"
	config=$(sha256sum "$d/config.json" | cut -d' ' -f1)
	config_size=$(stat -c %s "$d/config.json")
	mv "$d/config.json" "$img/blobs/sha256/$config"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
		"$config" "$config_size" "$layer" "$layer_size" >"$d/manifest.json"
	manifest=$(sha256sum "$d/manifest.json" | cut -d' ' -f1)
	manifest_size=$(stat -c %s "$d/manifest.json")
	mv "$d/manifest.json" "$img/blobs/sha256/$manifest"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"1"}}]}' \
		"$manifest" "$manifest_size" "$PAUSE_IMAGE" >"$img/index.json"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$img/oci-layout"
	tar -C "$img" -cf "$d/pause-image.tar.tmp" .
	mv "$d/pause-image.tar.tmp" "$d/pause-image.tar"
	rm -rf "$img" "$root"
	ln -sf "$d/pause" "$BIN/pause"
}

# ------------------------------------------------------------ processes

pidfile() { echo "$RUN/$1.pid"; }

# The start time of process PID (clock ticks since boot): with the pid, it
# names one process, whereas a pid alone may be reused.
start_time() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }

# record NAME PID EXE: NAME's pid file.
record() { echo "$2 $3 $(start_time "$2")" >"$(pidfile "$1")"; }

# The pid in NAME's pid file, if that is still the process we started, running
# the binary we started: /run/airlock-k8s outlives a reboot here, and its
# pid could by then be anyone's (Docker's containerd runs /usr/bin/containerd
# too).
running_pid() {
	local f pid exe started
	f=$(pidfile "$1")
	[ -s "$f" ] || return 1
	read -r pid exe started <"$f" || true
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$exe" ] || return 1
	[ "$(start_time "$pid")" = "$started" ] || return 1
	echo "$pid"
}

# start NAME BINARY ARGS...: run it in the background (its own session, so
# it outlives this script), output to $LOGS/NAME.log. It runs in /, not in
# the directory this script ran in: that may be a checkout removed while the
# cluster is up (as scripts/setup.sh's daemons do).
start() {
	local name=$1 exe=$2
	shift 2
	if running_pid "$name" >/dev/null; then
		return 0
	fi
	exe=$(readlink -f "$exe")
	printf '\n==== %s started %s\n' "$name" "$(date -Is)" >>"$LOGS/$name.log"
	(cd / && exec setsid "$exe" "$@") >>"$LOGS/$name.log" 2>&1 </dev/null &
	record "$name" $! "$exe"
}

# stop NAME: SIGTERM, then SIGKILL after a grace period.
stop() {
	local name=$1 pid i
	if pid=$(running_pid "$name"); then
		kill "$pid" 2>/dev/null || true
		for i in $(seq 1 50); do
			[ -d "/proc/$pid" ] || break
			sleep 0.2
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$(pidfile "$name")"
}

# wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
	local what=$1 secs=$2 i
	shift 2
	for i in $(seq 1 $((secs * 4))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.25
	done
	die "$what did not come up within ${secs}s (logs: $LOGS)"
}

# ------------------------------------------------------------ certificates

# sign NAME CN [O] [SANS]: a key and a certificate signed by the cluster CA.
sign() {
	local name=$1 cn=$2 o=${3:-} sans=${4:-} subj ext
	[ -s "$PKI/$name.crt" ] && return 0
	subj="/CN=$cn"
	[ -n "$o" ] && subj="/O=$o$subj"
	ext=$PKI/$name.ext
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [ -n "$sans" ]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=$sans"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$ext"
	openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
	openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$ext"
}

kubeconfig() { # kubeconfig FILE CERTNAME
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: airlock-k8s
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $2
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: airlock-k8s
  context:
    cluster: airlock-k8s
    user: $2
current-context: airlock-k8s
EOF
}

certificates() {
	local ip=$1 name=$2
	mkdir -p "$PKI"
	chmod 0755 "$PKI"
	if [ ! -s "$PKI/ca.crt" ]; then
		openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
		openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=airlock-k8s-ca" -days 3650 -out "$PKI/ca.crt" 2>/dev/null
	fi
	# The node's address is in the serving certificates: a new address (another
	# machine, a changed network) means new ones.
	if [ "$(cat "$PKI/node-ip" 2>/dev/null)" != "$ip $name" ]; then
		rm -f "$PKI/apiserver.crt" "$PKI/kubelet-server.crt" "$PKI/kubelet.crt"
		echo "$ip $name" >"$PKI/node-ip"
	fi
	sign apiserver kube-apiserver "" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$SERVICE_IP,IP:$ip"
	sign apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	sign admin kubernetes-admin system:masters
	sign controller-manager system:kube-controller-manager
	sign scheduler system:kube-scheduler
	sign kubelet "system:node:$name" system:nodes
	sign kubelet-server "$name" "" "DNS:$name,IP:$ip"
	if [ ! -s "$PKI/sa.key" ]; then
		openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
		openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	fi
	# kube-network-policies authenticates with a static token (see start_netpol).
	if [ ! -s "$PKI/netpol.token" ]; then
		head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PKI/netpol.token"
	fi
	printf '%s,kube-network-policies,kube-network-policies\n' "$(cat "$PKI/netpol.token")" >"$PKI/tokens.csv"
	chmod 0600 "$PKI"/*.key "$PKI/netpol.token" "$PKI/tokens.csv"
	kubeconfig "$KUBECONFIG_ADMIN" admin
	# A test cluster on loopback: its admin kubeconfig is readable by the test
	# user (the key it names is root's; tests run as root here).
	chmod 0644 "$KUBECONFIG_ADMIN"
	kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
	kubeconfig "$STATE/scheduler.kubeconfig" scheduler
	kubeconfig "$STATE/kubelet.kubeconfig" kubelet
}

# ------------------------------------------------------------ containerd

# gVisor. Debian's runsc (20221219) has no containerd shim
# (containerd-shim-runsc-v1), so the handler "runsc" runs it under
# containerd's runc shim, as Docker does (--network=host: inside the pod's
# network namespace, each container being its own gVisor sandbox). A pod
# then starts, but the exit of its containers is never reported (the pod
# stays Running), so check_gvisor finds it unusable and creates no
# RuntimeClass. What was tried beyond that, on this machine: gVisor's own
# shim built from the gvisor.dev/gvisor Go module (go branch,
# v0.0.0-20260527191743-a81fd9dd382e) (1) lowers its OOM score to -999,
# which needs CAP_SYS_RESOURCE, which this machine's root lacks ("failed to
# set OOM Score on shim: permission denied"), and (2) once that is patched
# out, speaks the containerd 2 shim bootstrap protocol, which Debian's
# containerd 1.6 does not ("dial unix {"version":2,...}: invalid
# argument"). A working gVisor RuntimeClass here needs containerd >= 1.7
# and a shim that keeps its OOM score.
runsc_wrapper() {
	write_file "$STATE/runsc" <<'EOF'
#!/bin/sh
# Written by airlock's scripts/k8s-cluster.sh: gVisor for the test cluster's containerd.
exec /usr/bin/runsc --network=host --ignore-cgroups "$@"
EOF
	chmod 0755 "$STATE/runsc"
}

containerd_config() {
	local runsc=""
	if [ -x /usr/bin/runsc ]; then
		runsc_wrapper
		runsc="
        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc]
          runtime_type = \"io.containerd.runc.v2\"
          [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runsc.options]
            BinaryName = \"$STATE/runsc\"
            Root = \"$RUN/runc\"
            SystemdCgroup = false"
	fi
	mkdir -p "$STATE/containerd" "$STATE/cni/net.d" "$RUN/containerd"
	write_file "$STATE/containerd/config.toml" <<EOF
# Written by airlock's scripts/k8s-cluster.sh: the test cluster's own
# containerd, apart from Docker's.
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd"
oom_score = 0

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$STATE/containerd/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    restrict_oom_score_adj = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".registry]
      # Per-registry hosts.toml files, read at each pull.
      config_path = "$STATE/containerd/certs.d"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN"
      conf_dir = "$STATE/cni/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            # Not the shim's default /run/containerd/runc, which is Docker's
            # containerd's.
            Root = "$RUN/runc"
            SystemdCgroup = false$runsc
EOF
	# The test registry speaks plain HTTP (containerd would try HTTPS).
	mkdir -p "$STATE/containerd/certs.d/$REGISTRY_ADDR"
	write_file "$STATE/containerd/certs.d/$REGISTRY_ADDR/hosts.toml" <<EOF
# Written by airlock's scripts/k8s-cluster.sh: the test registry, plain HTTP
# on loopback.
server = "http://$REGISTRY_ADDR"

[host."http://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve"]
EOF
	# The pod network: one bridge, addresses from the node's pod CIDR. No
	# ipMasq: the masquerade rule is ours (AIRLOCK-K8S-POSTROUTING), so that
	# `down` can remove it without touching anyone else's.
	write_file "$STATE/cni/net.d/10-airlock-k8s.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "airlock-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# write_file FILE < CONTENT: replace FILE only when CONTENT differs, in one
# rename (containerd watches its CNI directory and would read a half-written
# file).
write_file() {
	local tmp
	tmp=$(mktemp "$1.XXXXXX")
	cat >"$tmp"
	if cmp -s "$tmp" "$1"; then
		rm -f "$tmp"
	else
		chmod 0644 "$tmp"
		mv -f "$tmp" "$1"
	fi
}

ctr_k8s() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }

start_containerd() {
	containerd_config
	start containerd /usr/bin/containerd --config "$STATE/containerd/config.toml"
	wait_for containerd 30 ctr_k8s version
	# (Again when the cached image is not the one containerd has.)
	local digest
	digest=$(tar -xOf "$CACHE/pause/pause-image.tar" ./index.json | grep -o 'sha256:[0-9a-f]*' | head -1)
	if ! ctr_k8s images ls "name==$PAUSE_IMAGE" | grep -qF "$digest"; then
		ctr_k8s images import "$CACHE/pause/pause-image.tar" >/dev/null
	fi
}

# ------------------------------------------------------------ registry

# The registry `airlock image build` pushes to in the e2e tests
# ([engine.kubernetes] registry = "$REGISTRY_ADDR/..."): scripts/testregistry,
# built from this checkout (quick once Go has cached it). Loopback only:
# Docker counts 127.0.0.0/8 registries as insecure (plain HTTP) by default,
# and our containerd is told so by its hosts.toml. Its manifests live in its
# memory, so it starts with an empty blob directory, and `down` removes it.
start_registry() {
	running_pid registry >/dev/null && return 0
	command -v go >/dev/null || die "Go is needed to build the test registry"
	mkdir -p "$STATE/bin"
	(cd "$SRC" && CGO_ENABLED=0 go build -o "$STATE/bin/testregistry.tmp" ./scripts/testregistry) ||
		die "could not build the test registry (scripts/testregistry)"
	mv -f "$STATE/bin/testregistry.tmp" "$STATE/bin/testregistry"
	start registry "$STATE/bin/testregistry" -addr "$REGISTRY_ADDR" -dir "$REGISTRY_DIR"
	wait_for "the test registry on $REGISTRY_ADDR" 30 curl -fsS "http://$REGISTRY_ADDR/v2/"
}

# ------------------------------------------------------------ host network

# Our iptables rules, all in AIRLOCK-K8S-* chains hooked at the top of the
# built-in ones. Docker's FORWARD policy is DROP: pod traffic (also between
# two pods on the bridge, as br_netfilter passes bridged frames through
# iptables) is accepted here before it gets there.
network_up() {
	sysctl -qw net.ipv4.ip_forward=1
	[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
	iptables -w -N AIRLOCK-K8S-FORWARD 2>/dev/null || iptables -w -F AIRLOCK-K8S-FORWARD
	iptables -w -A AIRLOCK-K8S-FORWARD -s "$POD_CIDR" -j ACCEPT
	iptables -w -A AIRLOCK-K8S-FORWARD -d "$POD_CIDR" -j ACCEPT
	iptables -w -C FORWARD -j AIRLOCK-K8S-FORWARD 2>/dev/null || iptables -w -I FORWARD 1 -j AIRLOCK-K8S-FORWARD
	iptables -w -t nat -N AIRLOCK-K8S-POSTROUTING 2>/dev/null || iptables -w -t nat -F AIRLOCK-K8S-POSTROUTING
	iptables -w -t nat -A AIRLOCK-K8S-POSTROUTING -s "$POD_CIDR" ! -d "$POD_CIDR" -j MASQUERADE
	iptables -w -t nat -C POSTROUTING -j AIRLOCK-K8S-POSTROUTING 2>/dev/null || iptables -w -t nat -I POSTROUTING 1 -j AIRLOCK-K8S-POSTROUTING
}

# remove_chain TABLE CHAIN HOOK...: unhook and delete one of our chains.
remove_chain() {
	local table=$1 chain=$2 hook
	shift 2
	for hook in "$@"; do
		while iptables -w -t "$table" -D "$hook" -j "$chain" 2>/dev/null; do :; done
	done
	iptables -w -t "$table" -F "$chain" 2>/dev/null || true
	iptables -w -t "$table" -X "$chain" 2>/dev/null || true
}

network_down() {
	remove_chain mangle AIRLOCK-K8S-NETPOL POSTROUTING
	remove_chain mangle AIRLOCK-K8S-NETPOL-IN INPUT
	remove_chain filter AIRLOCK-K8S-FORWARD FORWARD
	remove_chain nat AIRLOCK-K8S-POSTROUTING POSTROUTING
	# A pod network namespace left by a containerd that died: ours are the
	# ones holding an address of the pod CIDR.
	local ns
	for ns in $(ip netns list 2>/dev/null | awk '/^cni-/ {print $1}'); do
		if ip netns exec "$ns" ip -4 -o addr 2>/dev/null | grep -q " ${POD_CIDR%.*}\."; then
			ip netns delete "$ns" 2>/dev/null || true
		elif ! mountpoint -q "/run/netns/$ns"; then
			# After a reboot: a name left of a namespace that is gone.
			rm -f "/run/netns/$ns"
		fi
	done
	ip link delete "$BRIDGE" 2>/dev/null || true
	rm -rf "$STATE/cni/networks"
}

# ------------------------------------------------------------ control plane

start_etcd() {
	start etcd /usr/bin/etcd --name airlock-k8s --data-dir "$STATE/etcd" \
		--listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
		--listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
		--initial-cluster "airlock-k8s=http://$ETCD_PEER" --initial-cluster-state new \
		--listen-metrics-urls "" --logger zap --log-level warn \
		--snapshot-count 10000 --quota-backend-bytes 2147483648
	wait_for etcd 30 curl -fsS "http://$ETCD_CLIENT/health"
}

api_ready() {
	curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://127.0.0.1:$API_PORT/readyz" >/dev/null
}

# On loopback only: pods reach the node's address, and have no business with
# the API (the kubelet and everything else here use 127.0.0.1).
start_apiserver() {
	local ip=$1
	start kube-apiserver "$BIN/kube-apiserver" \
		--etcd-servers "http://$ETCD_CLIENT" \
		--bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address "$ip" \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--client-ca-file "$PKI/ca.crt" \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority "$PKI/ca.crt" \
		--kubelet-preferred-address-types InternalIP \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-account-key-file "$PKI/sa.pub" \
		--service-account-signing-key-file "$PKI/sa.key" \
		--token-auth-file "$PKI/tokens.csv" \
		--authorization-mode Node,RBAC \
		--enable-admission-plugins NodeRestriction \
		--allow-privileged=false --profiling=false \
		--v 1
	wait_for kube-apiserver 120 api_ready
}

start_controllers() {
	start kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--use-service-account-credentials=true \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24 \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--profiling=false --v 1
	start kube-scheduler "$BIN/kube-scheduler" \
		--kubeconfig "$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
		--authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --leader-elect=false --profiling=false --v 1
}

# ------------------------------------------------------------ kubelet

start_kubelet() {
	local ip=$1 name=$2
	mkdir -p "$STATE/kubelet" "$LOGS/pods"
	# A busy test machine must not evict the tests' pods: the eviction
	# thresholds are the lowest allowed and image GC waits for a full disk;
	# swap may be on (failSwapOn false); cgroupfs as containerd's runc (no
	# systemd here).
	cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
failSwapOn: false
memorySwap: {}
resolvConf: /etc/resolv.conf
podLogsDir: $LOGS/pods
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
evictionPressureTransitionPeriod: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
imageMinimumGCAge: 87600h
serializeImagePulls: false
maxPods: 110
podCIDR: $POD_CIDR
hairpinMode: hairpin-veth
registerNode: true
rotateCertificates: false
serverTLSBootstrap: false
shutdownGracePeriod: 0s
staticPodPath: ""
localStorageCapacityIsolation: true
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 20s
EOF
	start kubelet "$BIN/kubelet" --config "$STATE/kubelet-config.yaml" \
		--kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$STATE/kubelet" \
		--node-ip "$ip" --hostname-override "$name" --v 1
}

node_ready() {
	[ "$(kubectl get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# ------------------------------------------------------------ objects

bootstrap_objects() {
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: airlock}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kube-network-policies}
rules:
- apiGroups: [""]
  resources: [pods, namespaces, nodes]
  verbs: [list, watch, get]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, get]
- apiGroups: [policy.networking.k8s.io]
  resources: [adminnetworkpolicies, baselineadminnetworkpolicies]
  verbs: [list, watch, get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kube-network-policies}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-network-policies}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-network-policies}
EOF
}

# ------------------------------------------------------------ NetworkPolicy

# kube-network-policies decides about the first packet of each connection in
# user space, through an NFQUEUE. Upstream it installs its own nftables rules
# that send those packets with the nftables `queue` statement, which needs
# the kernel's nft_queue (CONFIG_NFT_QUEUE); this machine's kernel lacks it
# (its rules are refused: "Could not process rule: No such file or
# directory"), while the xtables NFQUEUE target works. So the packets are
# queued here by iptables (AIRLOCK-K8S-NETPOL, in mangle POSTROUTING as
# upstream's postrouting hook, and INPUT so a pod's traffic to the node is
# judged too), for every pod of the pod CIDR rather than only those a policy
# selects (the daemon accepts what no policy restricts); its own rule set
# fails to load and it carries on without it. The queue has no bypass flag:
# when the daemon is not there, new pod connections fail closed.
#
# It only reads its API credentials in-cluster (fixed paths under
# /var/run/secrets/kubernetes.io/serviceaccount), so it runs in a mount
# namespace of its own with a tmpfs over /run holding them: nothing is written
# to the host's /run.
start_netpol() {
	local name=$1 i pid
	if ! running_pid kube-network-policies >/dev/null; then
		cat >"$STATE/netpol-run.sh" <<EOF
#!/bin/sh
# Written by airlock's scripts/k8s-cluster.sh.
set -e
mount -t tmpfs -o size=1m,mode=0755 tmpfs /run
d=/run/secrets/kubernetes.io/serviceaccount
mkdir -p \$d
cp $PKI/ca.crt \$d/ca.crt
cp $PKI/netpol.token \$d/token
echo default >\$d/namespace
export KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=$API_PORT
exec $BIN/kube-network-policies --hostname-override $name --nfqueue-id $NFQUEUE \\
	--metrics-bind-address $NETPOL_METRICS --disable-nri --netfilter-bug-1766-fix=false --v 1
EOF
		chmod 0755 "$STATE/netpol-run.sh"
		start kube-network-policies /usr/bin/unshare --mount --propagation private "$STATE/netpol-run.sh"
		# unshare execs the script, which execs the daemon: that is what the
		# pid file must name.
		read -r pid _ <"$(pidfile kube-network-policies)"
		record kube-network-policies "$pid" "$(readlink -f "$BIN/kube-network-policies")"
	fi
	# Queue only once the daemon listens on it (the queue has no bypass).
	read -r pid _ <"$(pidfile kube-network-policies)"
	for i in $(seq 1 120); do
		grep -qE "^ *$NFQUEUE " /proc/net/netfilter/nfnetlink_queue 2>/dev/null && break
		[ -d "/proc/$pid" ] || break
		sleep 0.25
	done
	if ! grep -qE "^ *$NFQUEUE " /proc/net/netfilter/nfnetlink_queue; then
		log "NetworkPolicy is NOT enforced: kube-network-policies did not open its queue (log: $LOGS/kube-network-policies.log)"
		stop kube-network-policies
		return 0
	fi
	iptables -w -t mangle -N AIRLOCK-K8S-NETPOL 2>/dev/null || iptables -w -t mangle -F AIRLOCK-K8S-NETPOL
	iptables -w -t mangle -A AIRLOCK-K8S-NETPOL -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
	# What root on the node sends (the kubelet's probes) is not judged, as upstream.
	iptables -w -t mangle -A AIRLOCK-K8S-NETPOL -m owner --uid-owner 0 -j RETURN
	iptables -w -t mangle -A AIRLOCK-K8S-NETPOL -s "$POD_CIDR" -j NFQUEUE --queue-num "$NFQUEUE"
	iptables -w -t mangle -A AIRLOCK-K8S-NETPOL -d "$POD_CIDR" -j NFQUEUE --queue-num "$NFQUEUE"
	iptables -w -t mangle -N AIRLOCK-K8S-NETPOL-IN 2>/dev/null || iptables -w -t mangle -F AIRLOCK-K8S-NETPOL-IN
	iptables -w -t mangle -A AIRLOCK-K8S-NETPOL-IN -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
	iptables -w -t mangle -A AIRLOCK-K8S-NETPOL-IN -s "$POD_CIDR" -j NFQUEUE --queue-num "$NFQUEUE"
	iptables -w -t mangle -C POSTROUTING -j AIRLOCK-K8S-NETPOL 2>/dev/null || iptables -w -t mangle -I POSTROUTING 1 -j AIRLOCK-K8S-NETPOL
	iptables -w -t mangle -C INPUT -j AIRLOCK-K8S-NETPOL-IN 2>/dev/null || iptables -w -t mangle -I INPUT 1 -j AIRLOCK-K8S-NETPOL-IN
}

# ------------------------------------------------------------ volumes

# A dynamic provisioner, as a cluster's storage gives one: each claim of
# StorageClass airlock-local (the default class) gets a directory of its own
# under $VOLUMES, as a local PersistentVolume on this node. Not
# kube-controller-manager's --enable-hostpath-provisioner: its directories
# are root's, 0750, and the kubelet applies no fsGroup to hostPath volumes,
# so a non-root pod could not write its claim; the kubelet does apply it to
# local volumes. It runs on the node, as root (it makes and removes the
# directories), with a client certificate of its own; the binding mode
# WaitForFirstConsumer lets the scheduler pick the node first, as for any
# local storage.
start_provisioner() {
	local name=$1
	build_provisioner
	sign provisioner airlock-provisioner
	[ -s "$STATE/provisioner.kubeconfig" ] || kubeconfig "$STATE/provisioner.kubeconfig" provisioner
	mkdir -p "$VOLUMES"
	chmod 0700 "$VOLUMES"
	kubectl apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: airlock-provisioner}
rules:
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch, update]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: airlock-provisioner}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: airlock-provisioner}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: airlock-provisioner}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: airlock.dev/local
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
EOF
	start airlock-provisioner "$BIN/airlock-provisioner" -kubeconfig "$STATE/provisioner.kubeconfig" \
		-root "$VOLUMES" -node "$name"
}

provisioner_up() { running_pid airlock-provisioner >/dev/null; }

# ------------------------------------------------------------ gVisor

rc_gvisor() {
	kubectl apply -f - >/dev/null <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: gvisor}
handler: runsc
EOF
}

# RuntimeClass gvisor (handler runsc) once a pod really ran under it here;
# the answer is kept in $STATE/gvisor (ok, or the pod's status).
check_gvisor() {
	[ -x /usr/bin/runsc ] || return 0
	if [ ! -s "$STATE/gvisor" ]; then
		log "checking that a pod runs under gVisor (runsc)"
		rc_gvisor
		kubectl -n kube-system delete pod airlock-k8s-gvisor-check --ignore-not-found --grace-period=0 --force >/dev/null 2>&1 || true
		kubectl -n kube-system apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: airlock-k8s-gvisor-check}
spec:
  runtimeClassName: gvisor
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
  - {name: probe, image: $PAUSE_IMAGE, imagePullPolicy: Never, command: [/pause, dial, "127.0.0.1:1"]}
EOF
		# It must run, and its exit (1: nothing listens there) be reported.
		if kubectl -n kube-system wait --for=jsonpath='{.status.phase}'=Failed pod/airlock-k8s-gvisor-check --timeout=30s >/dev/null 2>&1 &&
			[ "$(kubectl -n kube-system get pod airlock-k8s-gvisor-check -o 'jsonpath={.status.containerStatuses[0].state.terminated.exitCode}')" = 1 ]; then
			echo ok >"$STATE/gvisor"
		else
			kubectl -n kube-system get pod airlock-k8s-gvisor-check -o 'jsonpath={.status}' >"$STATE/gvisor" 2>&1 || echo "no pod" >"$STATE/gvisor"
		fi
		kubectl -n kube-system delete pod airlock-k8s-gvisor-check --grace-period=0 --force >/dev/null 2>&1 || true
		# A runsc sandbox under the runc shim cannot be stopped through it
		# ("sandbox is not running"): its shim goes, with what it runs.
		local t shim
		for t in $(ctr_k8s tasks ls -q 2>/dev/null); do
			ctr_k8s containers info "$t" 2>/dev/null | grep -q '"io.kubernetes.pod.name": "airlock-k8s-gvisor-check"' || continue
			for shim in $(pgrep -f -- "-address $CONTAINERD_SOCK" || true); do
				grep -qaF "$t" "/proc/$shim/cmdline" 2>/dev/null || continue
				pkill -9 -P "$shim" 2>/dev/null || true
				kill -9 "$shim" 2>/dev/null || true
			done
		done
	fi
	if [ "$(cat "$STATE/gvisor")" = ok ]; then
		rc_gvisor
	else
		log "no RuntimeClass gvisor: a pod under runsc did not run and report its exit here ($STATE/gvisor has its status)"
		kubectl delete runtimeclass gvisor --ignore-not-found >/dev/null 2>&1 || true
	fi
}

# ------------------------------------------------------------ probe

# probe: does the cluster enforce NetworkPolicy? A server pod, and client
# pods that dial it: without a policy (must connect), under a policy denying
# all egress (must not), under one allowing egress to the server's port (must
# connect). All in a namespace of its own, removed afterwards.
probe_pod() { # probe_pod NAME ARGS...: run a client pod, print its phase
	local name=$1 args phase i
	shift
	args=$(printf '"%s",' "$@")
	kubectl -n "$PROBE_NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {role: client}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsUser: 65535, runAsGroup: 65535, runAsNonRoot: true}
  containers:
  - name: probe
    image: $PAUSE_IMAGE
    imagePullPolicy: Never
    command: [/pause, ${args%,}]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
	for i in $(seq 1 120); do
		phase=$(kubectl -n "$PROBE_NS" get pod "$name" -o 'jsonpath={.status.phase}')
		case $phase in Succeeded|Failed) break ;; esac
		sleep 0.25
	done
	echo "$phase"
}

cmd_probe() {
	PROBE_NS=airlock-k8s-probe
	is_up || die "the cluster is not up: run $0 up first"
	kubectl delete namespace "$PROBE_NS" --ignore-not-found --wait=true >/dev/null
	kubectl create namespace "$PROBE_NS" >/dev/null
	kubectl -n "$PROBE_NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {role: server}}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsUser: 65535, runAsGroup: 65535, runAsNonRoot: true}
  containers:
  - name: server
    image: $PAUSE_IMAGE
    imagePullPolicy: Never
    command: [/pause, listen, ":8080"]
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
EOF
	kubectl -n "$PROBE_NS" wait --for=condition=Ready pod/server --timeout=60s >/dev/null
	local ip open denied allowed ok=0
	ip=$(kubectl -n "$PROBE_NS" get pod server -o 'jsonpath={.status.podIP}')
	open=$(probe_pod open dial "$ip:8080")
	kubectl -n "$PROBE_NS" apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
EOF
	sleep 1
	denied=$(probe_pod denied dial "$ip:8080")
	kubectl -n "$PROBE_NS" apply -f - >/dev/null <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-server}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {role: server}}}]
    ports: [{protocol: TCP, port: 8080}]
EOF
	sleep 1
	allowed=$(probe_pod allowed dial "$ip:8080")
	printf 'no policy:               %s (want Succeeded)\n' "$open"
	printf 'egress denied:           %s (want Failed)\n' "$denied"
	printf 'egress allowed to :8080: %s (want Succeeded)\n' "$allowed"
	kubectl -n "$PROBE_NS" logs denied 2>/dev/null | sed 's/^/  denied pod said: /'
	kubectl delete namespace "$PROBE_NS" --wait=false >/dev/null
	[ "$open" = Succeeded ] && [ "$denied" = Failed ] && [ "$allowed" = Succeeded ] || ok=1
	if [ $ok = 0 ]; then
		echo "NetworkPolicy is enforced"
	else
		echo "NetworkPolicy is NOT enforced as it should be"
	fi
	return $ok
}

# ------------------------------------------------------------ commands

is_up() {
	local c
	for c in etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet; do
		running_pid "$c" >/dev/null || return 1
	done
	api_ready 2>/dev/null && node_ready "$(node_name)"
}

netpol_up() {
	running_pid kube-network-policies >/dev/null &&
		iptables -w -t mangle -C POSTROUTING -j AIRLOCK-K8S-NETPOL 2>/dev/null
}

cmd_up() {
	mkdir -p "$STATE" "$RUN" "$LOGS"
	if is_up && netpol_up; then
		start_registry
		# A cluster brought up before the provisioner was part of it
		# gets it now.
		provisioner_up || start_provisioner "$(node_name)"
		log "up (kubeconfig $KUBECONFIG_ADMIN, registry $REGISTRY_ADDR)"
		return 0
	fi
	build
	local ip name
	ip=$(node_ip)
	name=$(node_name)
	# Leftovers of a run that did not end with `down` (a crash, a reboot).
	if ! running_pid containerd >/dev/null; then
		cleanup_leftovers
	fi
	certificates "$ip" "$name"
	network_up
	start_etcd
	start_containerd
	start_registry
	start_apiserver "$ip"
	start_controllers
	start_kubelet "$ip" "$name"
	bootstrap_objects
	# The node object outlives `down` (etcd keeps it) with its last status:
	# the kubelet's own health first, then Ready.
	wait_for kubelet 120 curl -fsS http://127.0.0.1:10248/healthz
	wait_for "node $name Ready" 120 node_ready "$name"
	kubectl label node "$name" node-role.kubernetes.io/control-plane- >/dev/null 2>&1 || true
	wait_for "the default service account of namespace airlock" 60 kubectl -n airlock get serviceaccount default
	start_netpol "$name"
	start_provisioner "$name"
	check_gvisor
	log "up: node $name ($ip), kubeconfig $KUBECONFIG_ADMIN, registry $REGISTRY_ADDR"
}

# Everything a previous run may have left when it did not end with `down`.
cleanup_leftovers() {
	local c
	for c in airlock-provisioner kube-network-policies kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
		stop "$c"
	done
	kill_shims
	unmount_under "$RUN/containerd" "$STATE/containerd" "$STATE/kubelet"
	network_down
	# Runtime state only (what ran is gone): containerd would otherwise try
	# to recover those tasks.
	rm -rf --one-file-system "$CONTAINERD_SOCK" "$RUN/containerd.sock.ttrpc" "$RUN/containerd" "$RUN/runc" "$RUN/runsc"
}

# The shims of our containerd (containers outlive it): found by the socket
# address in their command line, which no other containerd's shim has.
kill_shims() {
	local pid
	for pid in $(pgrep -f -- "-address $CONTAINERD_SOCK" || true); do
		# Their containers first: the shim's children.
		pkill -9 -P "$pid" 2>/dev/null || true
		kill -9 "$pid" 2>/dev/null || true
	done
}

unmount_under() {
	local dir m
	for dir in "$@"; do
		# Deepest first.
		for m in $(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
			umount -l "$m" 2>/dev/null || true
		done
	done
}

cmd_down() {
	mkdir -p "$RUN"
	# The pods first, so the kubelet tears down their sandboxes (network
	# namespaces, CNI addresses) itself.
	if running_pid kubelet >/dev/null && api_ready 2>/dev/null; then
		kubectl delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
		local i
		for i in $(seq 1 40); do
			[ -z "$(ctr_k8s tasks ls -q 2>/dev/null)" ] && break
			sleep 0.5
		done
	fi
	stop airlock-provisioner
	stop kube-network-policies
	stop kubelet
	stop kube-scheduler
	stop kube-controller-manager
	stop kube-apiserver
	stop etcd
	local t
	for t in $(ctr_k8s tasks ls -q 2>/dev/null); do
		ctr_k8s tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
	done
	stop containerd
	stop registry
	rm -rf --one-file-system "$REGISTRY_DIR"
	kill_shims
	unmount_under "$RUN/containerd" "$STATE/containerd" "$STATE/kubelet"
	network_down
	# Runtime state only (what ran is gone): containerd would otherwise try
	# to recover those tasks.
	rm -rf --one-file-system "$CONTAINERD_SOCK" "$RUN/containerd.sock.ttrpc" "$RUN/containerd" "$RUN/runc" "$RUN/runsc"
	log "down"
}

cmd_status() {
	local c pid ok=0
	for c in etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-network-policies registry airlock-provisioner; do
		if pid=$(running_pid "$c"); then
			printf '%-24s running (pid %s)\n' "$c" "$pid"
		else
			printf '%-24s stopped\n' "$c"
			ok=1
		fi
	done
	if [ $ok = 0 ] && api_ready 2>/dev/null; then
		kubectl get nodes -o wide
		echo "kubeconfig: $KUBECONFIG_ADMIN"
		echo "registry: $REGISTRY_ADDR (plain HTTP)"
		if netpol_up; then
			echo "NetworkPolicy: enforced (kube-network-policies; check with: $0 probe)"
		else
			echo "NetworkPolicy: NOT enforced"
			ok=1
		fi
		if [ "$(cat "$STATE/gvisor" 2>/dev/null)" = ok ]; then
			echo "RuntimeClass gvisor: yes"
		else
			echo "RuntimeClass gvisor: no (see check_gvisor in $0)"
		fi
	else
		ok=1
	fi
	return $ok
}

cmd_load() {
	[ $# -gt 0 ] || die "usage: $0 load IMAGE..."
	running_pid containerd >/dev/null || die "the cluster is not up: run $0 up first"
	local img id mark ref
	mkdir -p "$STATE/images"
	for img in "$@"; do
		id=$(docker image inspect -f '{{.Id}}' "$img") || die "no Docker image $img"
		# A tag without a registry is docker.io/library/NAME to containerd,
		# which is what the kubelet looks up for a pod's image NAME.
		ref=$img
		[[ $ref == */* ]] || ref=docker.io/library/$ref
		[[ ${ref%%/*} == *.* || ${ref%%/*} == *:* || ${ref%%/*} == localhost ]] || ref=docker.io/$ref
		mark=$STATE/images/$(printf '%s' "$ref" | tr '/:' '__')
		# Unchanged since the last load (same Docker image ID, still in
		# containerd): nothing to copy.
		if [ "$(cat "$mark" 2>/dev/null)" = "$id" ] && ctr_k8s images ls -q "name==$ref" | grep -q .; then
			log "$img is loaded"
			continue
		fi
		log "loading $img"
		docker save "$img" | ctr_k8s images import - >/dev/null
		echo "$id" >"$mark"
	done
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
load) shift; cmd_load "$@" ;;
probe) cmd_probe ;;
build) build ;;
*) die "usage: $0 up|down|status|load IMAGE...|probe|build" ;;
esac
