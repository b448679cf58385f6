package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Kinds of engine airlock knows ([engine] kind, --engine). "" is auto.
const (
	KindDocker = "docker"
	KindPodman = "podman"
	KindIncus  = "incus"
)

// Kinds lists the engine kinds in the order autodetection prefers them.
func Kinds() []string { return []string{KindDocker, KindPodman, KindIncus} }

// Endpoint is one place an engine may answer.
type Endpoint struct {
	Kind string
	Host string // e.g. unix:///run/podman/podman.sock; "" for the kind's default
	Why  string // how it was found, for people
	// Incus are the settings an Incus engine is made with ([engine.incus]).
	Incus IncusOptions
	// Kubernetes are the settings of a Kubernetes engine
	// ([engine.kubernetes]).
	Kubernetes KubernetesOptions
}

// Constructor makes an engine for an endpoint without contacting it.
type Constructor func(ep Endpoint) (Engine, error)

// constructors is the one registry of backends. A kind without a
// constructor is known but not implemented yet.
func constructors() map[string]Constructor {
	return map[string]Constructor{
		KindDocker: func(ep Endpoint) (Engine, error) { return NewDockerAt(ep.Host) },
		KindPodman: func(ep Endpoint) (Engine, error) { return NewPodman(ep.Host) },
		KindIncus:  func(ep Endpoint) (Engine, error) { return NewIncusWith(ep.Host, ep.Incus) },
		KindKubernetes: func(ep Endpoint) (Engine, error) {
			return NewKubernetes(ep.Kubernetes)
		},
	}
}

// Implemented reports whether airlock has a backend for kind.
func Implemented(kind string) bool { return constructors()[kind] != nil }

// Detect lists where engines may answer, in the order of preference:
// DOCKER_HOST, then the Docker socket, then Podman's sockets, then Incus'.
// It only looks for the sockets; it does not contact them. Sockets this
// user may not connect to come last, in the same order: a user outside the
// docker group who runs a rootless Podman gets the Podman.
func Detect(getenv func(string) string) []Endpoint {
	var eps, closed []Endpoint
	if h := getenv("DOCKER_HOST"); h != "" {
		eps = append(eps, Endpoint{Kind: KindDocker, Host: h, Why: "DOCKER_HOST is set"})
	}
	sock := func(kind, path, why string) {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode()&os.ModeSocket == 0 {
			return
		}
		// Connecting to a Unix socket needs write permission on it.
		if unix.Access(path, unix.W_OK) != nil {
			closed = append(closed, Endpoint{Kind: kind, Host: "unix://" + path, Why: why + ", but this user may not connect to it"})
			return
		}
		eps = append(eps, Endpoint{Kind: kind, Host: "unix://" + path, Why: why})
	}
	sock(KindDocker, "/var/run/docker.sock", "the Docker socket /var/run/docker.sock is there")
	if h := getenv("CONTAINER_HOST"); h != "" {
		eps = append(eps, Endpoint{Kind: KindPodman, Host: h, Why: "CONTAINER_HOST is set"})
	}
	if rt := getenv("XDG_RUNTIME_DIR"); rt != "" {
		sock(KindPodman, filepath.Join(rt, "podman", "podman.sock"), "the rootless Podman socket is there")
	}
	sock(KindPodman, "/run/podman/podman.sock", "the Podman socket /run/podman/podman.sock is there")
	if s := getenv("INCUS_SOCKET"); s != "" {
		sock(KindIncus, s, "INCUS_SOCKET is set")
	}
	sock(KindIncus, "/var/lib/incus/unix.socket", "the Incus socket /var/lib/incus/unix.socket is there")
	sock(KindIncus, "/run/incus/unix.socket", "the Incus socket /run/incus/unix.socket is there")
	return append(eps, closed...)
}

// Choose picks the endpoint for kind ("" is auto) among the detected ones:
// the first of that kind, or the first of all. With nothing detected it
// falls back to the kind's default (Docker's for auto), and says so.
func Choose(kind string, detected []Endpoint) (Endpoint, error) {
	if kind != "" {
		if _, known := constructors()[kind]; !known {
			return Endpoint{}, fmt.Errorf("unknown engine %q: choose one of %s, or leave it empty to detect one", kind, strings.Join(Kinds(), ", "))
		}
	}
	for _, ep := range detected {
		if kind == "" || ep.Kind == kind {
			if kind != "" {
				ep.Why = "configured (" + ep.Why + ")"
			} else {
				ep.Why = "detected: " + ep.Why
			}
			return ep, nil
		}
	}
	if kind == "" {
		return Endpoint{Kind: KindDocker, Why: "no engine detected; trying Docker's default socket"}, nil
	}
	return Endpoint{Kind: kind, Why: "no socket of it detected; trying its default"}, nil
}

// Open makes the engine for ep, or says that its kind is not implemented.
func Open(ep Endpoint) (Engine, error) {
	c := constructors()[ep.Kind]
	if c == nil {
		var have []string
		for _, k := range Kinds() {
			if Implemented(k) {
				have = append(have, k)
			}
		}
		return nil, fmt.Errorf("the %s engine is not implemented in this airlock yet: choose another with --engine or [engine] kind (%s): %w",
			ep.Kind, strings.Join(have, ", "), ErrUnsupported)
	}
	return c(ep)
}

// Caps are an engine's optional capabilities, looked up once when the engine
// is made; a missing one is nil, and Need says why.
type Caps struct {
	engine   string
	Exec     Execer
	Import   ImageImporter
	Build    ImageBuilder
	Push     ImagePusher
	Images   ImageStore
	Prune    NetworkPruner
	Remnants RemnantRemover
	Host     HostAddresser
	Limits   LimitsReporter
	// ProxyFiles is set when a running proxy's files go through the
	// engine rather than the run's egress directory.
	ProxyFiles ProxyFileHander
	// Ports is set when forwarded ports (run -p) reach the agent through
	// the engine rather than the sandbox's socket directory.
	Ports PortDialer
	Warm  Prewarmer
}

// CapsOf is the one place an engine's optional capabilities are looked up.
func CapsOf(e Engine) Caps {
	c := Caps{engine: e.Kind()}
	c.Exec, _ = e.(Execer)
	c.Import, _ = e.(ImageImporter)
	c.Build, _ = e.(ImageBuilder)
	c.Push, _ = e.(ImagePusher)
	c.Images, _ = e.(ImageStore)
	c.Prune, _ = e.(NetworkPruner)
	c.Remnants, _ = e.(RemnantRemover)
	c.Host, _ = e.(HostAddresser)
	c.Limits, _ = e.(LimitsReporter)
	c.ProxyFiles, _ = e.(ProxyFileHander)
	c.Ports, _ = e.(PortDialer)
	c.Warm, _ = e.(Prewarmer)
	return c
}

// Missing is the error for a capability the engine lacks: what cannot be
// done, on which engine.
func (c Caps) Missing(doing string) error {
	engine := c.engine
	if engine == "" {
		engine = "configured"
	}
	return fmt.Errorf("the %s engine cannot %s: %w", engine, doing, ErrUnsupported)
}
