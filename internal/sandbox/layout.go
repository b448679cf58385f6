package sandbox

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strconv"
)

// A run's sandbox is two parts: the agent's container, which has no network
// but loopback, and its egress proxy (`airlock proxy serve`, this very
// binary), the only way out. What every backend provides, however it does
// it:
//
//   - the airlock binary (SandboxSpec.Binary) at BinaryPath in both;
//   - the proxy sees SandboxSpec.Proxy.ConfigDir at ProxyConfigDir and is
//     started as `BinaryPath proxy serve --config ProxyConfigDir/config.json`;
//   - the proxy listens on the Unix sockets ProxySocket and APISocket, and
//     the agent reaches them on its own loopback at AgentProxyAddr and
//     AgentAPIAddr (on Docker, a relay in front of the agent's command
//     forwards them through a socket directory both containers mount).
//
// The caller says what (isolated, these mounts, this proxy policy); the
// backend decides how (networks, sockets, sidecar or pod or second
// instance), and owns its engine's quirks.
const (
	BinaryPath     = "/airlock/bin/airlock"
	ProxyConfigDir = "/airlock/egress"
	ProxySocket    = "/airlock/sock/proxy.sock"
	APISocket      = "/airlock/sock/api.sock"
	AgentProxyAddr = "127.0.0.1:3128"
	AgentAPIAddr   = "127.0.0.1:3129"
	// RunCAPath is where a run with injected credentials mounts its
	// interception CA's certificate (read-only), and CABundlePath where the
	// relay writes the image's trusted CAs plus that one, for the tools
	// whose CA setting replaces the system's rather than adding to it.
	RunCAPath    = "/airlock/run-ca.pem"
	CABundlePath = "/tmp/airlock-ca-bundle.pem"
	// SSHAgentSocket is the proxy's filtered ssh-agent, when the run has
	// one; the agent's container reaches it as it is, in the socket
	// directory both mount (no relay: it is a Unix socket already).
	SSHAgentSocket = "/airlock/sock/ssh-agent.sock"
	// ProxySSHAgentUpstream is where the proxy sees the user's own
	// ssh-agent (ProxySpec.Mounts), behind the filter.
	ProxySSHAgentUpstream = "/airlock/ssh-agent-upstream.sock"
)

// SocketDir is the directory of sockets both parts of a sandbox mount;
// HostSocketDir is where it is on the host, in a sandbox's SandboxSpec.Dir.
// Its entries are the sandbox's: the host opens none of them through a
// link.
const SocketDir = "/airlock/sock"

// HostSocketDir is the host side of SocketDir for a sandbox whose
// SandboxSpec.Dir is dir.
func HostSocketDir(dir string) string { return filepath.Join(dir, "sock") }

// PortSocketName is the socket, in SocketDir, on which the relay in the
// agent's container serves its loopback TCP port port to the host (run -p).
func PortSocketName(port int) string { return "port-" + strconv.Itoa(port) + ".sock" }

// SandboxSpec is a run's sandbox.
type SandboxSpec struct {
	// Agent is the agent's container. It never has a network; the backend
	// adds the binary and the channel to the proxy.
	Agent Spec
	Proxy ProxySpec
	// Binary is the host path of the static airlock binary both parts run.
	Binary string
	// Dir is a private host directory, existing, that the backend may use
	// for the sandbox's plumbing (the channel's sockets).
	Dir string
	// RelayFlags are extra flags for the relay in front of the agent's
	// command, when the backend uses one.
	RelayFlags []string
	// AgentReady, when set, is called after the agent's container is
	// created and before it starts, while the proxy comes up: the caller
	// finishes what the agent needs (its copy of the repository) meanwhile.
	// Its error undoes the sandbox and is returned. A backend whose mounts
	// are copies calls it in RestartSandbox too, once the stopped
	// container's files are home and before they go into the new one.
	AgentReady func(context.Context) error
}

// agentReady calls spec.AgentReady, if any.
func (spec SandboxSpec) agentReady(ctx context.Context) error {
	if spec.AgentReady == nil {
		return nil
	}
	return spec.AgentReady(ctx)
}

// ProxySpec is a sandbox's egress proxy.
type ProxySpec struct {
	Name string
	// User is "uid:gid", the agent's: the sockets are shared with it.
	User string
	// ConfigDir is the host directory with the proxy's configuration, where
	// it also writes its meter and audit log.
	ConfigDir string
	Env       []string
	// Network is an engine network the proxy joins instead of the
	// backend's own egress network (egress.network); "" for the default.
	Network string
	// ExtraHosts pin names to addresses for the proxy.
	ExtraHosts []HostAddr
	Labels     map[string]string
	Limits     Limits
	// Mounts are more host paths for the proxy alone (the user's
	// ssh-agent socket at ProxySSHAgentUpstream). A backend that cannot
	// give the proxy such a path working says so.
	Mounts []Mount
	// Handed are the names of the files, in ConfigDir, that the host hands
	// the proxy while it runs (refreshed cloud credentials), for it to take
	// up and remove. An engine whose ConfigDir is a copy hands them through
	// ProxyFileHander instead, and never copies them either way.
	Handed []string
}

// Sandbox identifies a created sandbox's parts.
type Sandbox struct {
	Agent string // the agent container's ID
	Proxy string // the proxy's ID (a container, or an instance)
}

// RelayCommand is the agent's command behind the relay that forwards
// AgentProxyAddr and AgentAPIAddr to the proxy's sockets, for backends
// whose channel is a shared socket directory.
func RelayCommand(cmd, flags []string) []string {
	relay := []string{BinaryPath, "relay",
		"--listen", AgentProxyAddr + "=" + ProxySocket,
		"--listen", AgentAPIAddr + "=" + APISocket}
	relay = append(append(relay, flags...), "--")
	return append(relay, cmd...)
}

// ProxyCommand is the proxy's command.
func ProxyCommand() []string {
	return []string{BinaryPath, "proxy", "serve", "--config", ProxyConfigDir + "/config.json"}
}

// Optional capabilities. Not every engine has them; which one does is
// decided once, when the engine is made (CapsOf).

// ImageImporter makes an image from a root file system tar stream.
type ImageImporter interface {
	ImportImage(ctx context.Context, r io.Reader, ref string) error
}

// ImageBuilder builds an image from a Dockerfile.
type ImageBuilder interface {
	BuildImage(ctx context.Context, req BuildRequest) error
}

// ImagePusher copies a local image to a registry, and returns the digest
// the registry keeps it under ("" when the engine does not say).
type ImagePusher interface {
	PushImage(ctx context.Context, req PushRequest) (string, error)
}

// PushRequest is one push: the local image Source, pushed as Target (a
// reference naming its registry).
type PushRequest struct {
	Source, Target string
	// Auth are the registry's credentials; the zero value pushes
	// anonymously.
	Auth     RegistryAuth
	Progress io.Writer // the engine's progress as plain lines; may be nil
}

// RegistryAuth are credentials for one registry, as a Docker config
// (or a credential helper) holds them.
type RegistryAuth struct {
	Username, Password string
	// IdentityToken is an OAuth refresh token the engine exchanges for
	// an access token; RegistryToken a bearer token sent as it is.
	IdentityToken, RegistryToken string
}

// NetworkPruner removes the backend's own egress networks that no sandbox
// uses, and returns their names.
type NetworkPruner interface {
	PruneNetworks(ctx context.Context) ([]string, error)
}

// Remnant is what remains of a container that is gone, removed behind
// the engine's back (Kubernetes: a sandbox's Secret and NetworkPolicies
// outlive its pod when someone else deletes the pod).
type Remnant struct {
	// State is the gone container's: ID, Name and the Labels it was made
	// with, so the caller decides as it would for the container. Its
	// Status is StatusDead.
	State
	// Objects name what remains, for people ("secret airlock/x-proxy").
	Objects []string
	// refs are those objects as the backend knows them.
	refs []remnantRef
}

// remnantRef is one object of a Remnant: of which kind, its name and
// identity (a new object of the same name is another).
type remnantRef struct{ kind, name, uid string }

// RemnantRemover finds and removes what remains of the backend's gone
// containers. Only objects the backend made for a container, and labelled
// with it, are remnants.
type RemnantRemover interface {
	Remnants(ctx context.Context) ([]Remnant, error)
	// RemoveRemnant removes exactly the objects Remnants listed in r; if
	// the container exists again, it leaves them.
	RemoveRemnant(ctx context.Context, r Remnant) error
}

// HostAddresser says where a sandbox's proxy reaches a service listening
// on the host (the demo's model server).
type HostAddresser interface {
	HostAddress(ctx context.Context) (string, error)
}

// ProxyFileHander hands a running proxy one of its ProxySpec.Handed files,
// for engines whose proxy's configuration directory is a copy, not the
// host's ConfigDir (Kubernetes). The file appears whole (written under
// another name first, then renamed over name), as the proxy's user and
// readable by it alone; what was at name, even a link, is replaced.
type ProxyFileHander interface {
	HandProxyFile(ctx context.Context, proxy, name string, data []byte) error
}

// PortDialer connects to a TCP port on the loopback of a container, for
// engines whose containers share no socket directory with the host
// (Kubernetes), where run -p carries each connection through the engine.
type PortDialer interface {
	DialPort(ctx context.Context, id string, port int) (net.Conn, error)
}

// LimitsReporter says why the engine drops memory, CPU and pids limits
// (rootless Podman on cgroup v1), or "" when it honours them.
type LimitsReporter interface {
	LimitsIgnored(ctx context.Context) (string, error)
}
