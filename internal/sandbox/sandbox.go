// Package sandbox runs agent containers on a container engine. Everything
// above it talks to the small Engine interface, so a Podman, Incus or
// Kubernetes backend only has to implement that.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) when a container does not exist.
var ErrNotFound = errors.New("not found")

// ErrEngineUnreachable is returned (wrapped) when the engine does not answer.
var ErrEngineUnreachable = errors.New("container engine unreachable")

// Mount is a bind mount of a host path into the container.
type Mount struct {
	Source   string // absolute host path
	Target   string // absolute container path
	ReadOnly bool
	// Persist keeps a writable directory mount's copy, on an engine whose
	// mounts are copies (Kubernetes), on storage that outlives the
	// container (a PersistentVolumeClaim): the container made again from
	// its spec finds it as the last one left it, and it is not copied in
	// again. An engine that mounts the host's directory ignores it.
	Persist bool
}

// Limits caps a container's resources. Zero means the engine's default.
type Limits struct {
	MemoryBytes int64
	CPUs        float64
	Pids        int64
	// DiskBytes caps what the container writes to its node's disk (its
	// writable layer, logs and volumes). Only Kubernetes enforces it (the
	// pod's ephemeral-storage limit: the kubelet evicts a pod over it);
	// elsewhere the run's supervisor measures the disk it uses.
	DiskBytes int64
}

// Tmpfs is a memory-backed file system mounted in the container, private
// to it; it is always nosuid and nodev.
type Tmpfs struct {
	Target    string // absolute container path
	SizeBytes int64  // 0: the engine's default
	// Exec allows running programs from it (tools unpack and run binaries
	// in /tmp); without it the mount is noexec.
	Exec bool
}

// HostAddr pins a name to an address in the container's /etc/hosts.
type HostAddr struct {
	Name string
	Addr netip.Addr
}

// ParseHostAddr reads "name:address" (the form of egress.extra_hosts).
func ParseHostAddr(s string) (HostAddr, error) {
	name, addr, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return HostAddr{}, fmt.Errorf("extra host %q: write it as name:address", s)
	}
	a, err := netip.ParseAddr(strings.Trim(addr, "[]"))
	if err != nil {
		return HostAddr{}, fmt.Errorf("extra host %q: %w", s, err)
	}
	return HostAddr{Name: name, Addr: a}, nil
}

// Spec describes one container. The hardening (no capabilities,
// no-new-privileges, init, non-root user, no network but loopback) is not
// optional: a backend applies it to every container it creates. A container
// that needs to reach anything does so through its sandbox's egress proxy
// (CreateSandbox).
type Spec struct {
	Name       string
	Image      string
	Cmd        []string
	Env        []string // NAME=value; never put secrets on Cmd
	User       string   // "uid:gid"
	WorkDir    string
	Mounts     []Mount
	Tmpfs      []Tmpfs
	Labels     map[string]string
	ExtraHosts []HostAddr
	Limits     Limits
	// Runtime is the OCI runtime the engine runs the container with, such
	// as "runsc" (gVisor); empty means the engine's default (runc).
	Runtime string
}

// Status is airlock's view of a container's state. Every backend maps its
// engine's states onto exactly these; anything else is StatusUnknown.
type Status string

const (
	// StatusCreated: made, never started.
	StatusCreated Status = "created"
	// StatusRunning: its processes run (Docker's "restarting" too).
	StatusRunning Status = "running"
	// StatusPaused: frozen by someone outside airlock; its processes
	// exist but do not run.
	StatusPaused Status = "paused"
	// StatusExited: it ran and ended; ExitCode says how.
	StatusExited Status = "exited"
	// StatusDead: the engine failed to stop or remove it; it will not run
	// again and its exit code means nothing.
	StatusDead Status = "dead"
	// StatusUnknown: the engine reported a state this backend does not
	// know.
	StatusUnknown Status = "unknown"
)

// Busy reports whether the container's processes exist (running or
// paused): removing it would kill them.
func (s Status) Busy() bool { return s == StatusRunning || s == StatusPaused }

// State is what Inspect and List report about a container.
type State struct {
	ID         string
	Name       string
	Image      string
	Status     Status
	ExitCode   int
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
	Labels     map[string]string
	// Why is the engine's account of a dead container, when it gives one.
	// It is for people: nothing decides on it.
	Why string
}

// ErrUnsupported is returned (wrapped) when an engine lacks a capability
// or a kind of engine is not implemented.
var ErrUnsupported = errors.New("not supported")

// Engine is the container backend.
type Engine interface {
	// Kind names the backend: "docker", "podman", "incus", "memory".
	Kind() string
	// Ping checks that the engine answers; errors wrap ErrEngineUnreachable.
	Ping(ctx context.Context) error
	Create(ctx context.Context, spec Spec) (id string, err error)
	Start(ctx context.Context, id string) error
	// Wait blocks until the container exits and returns its exit code.
	Wait(ctx context.Context, id string) (int, error)
	// Inspect accepts an ID or a name; errors wrap ErrNotFound.
	Inspect(ctx context.Context, id string) (State, error)
	// Stop sends SIGTERM, then SIGKILL after timeout.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Remove force-removes the container; a missing container is not an error.
	Remove(ctx context.Context, id string) error
	// List returns containers (running or not) carrying all the given labels.
	List(ctx context.Context, labels map[string]string) ([]State, error)
	// Logs copies the container's combined stdout and stderr to w.
	Logs(ctx context.Context, id string, w io.Writer) error
	ImageExists(ctx context.Context, ref string) (bool, error)

	// CreateSandbox creates and starts a run's sandbox as one unit: its
	// egress proxy, running and answering, then the agent's container,
	// isolated from every network, reaching the proxy only through the
	// channel the backend makes between them (see layout.go). If any step
	// fails, whatever it made is removed again.
	CreateSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error)
	// RestartSandbox brings an existing sandbox's stopped agent container
	// (spec.Agent.Name; its other fields are ignored) back, with a new
	// proxy made from spec.Proxy. If it fails, the new proxy is removed.
	RestartSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error)
	// RemoveProxy stops and removes a sandbox's proxy, leaving its agent's
	// container; a missing proxy is not an error.
	RemoveProxy(ctx context.Context, name string) error
}
