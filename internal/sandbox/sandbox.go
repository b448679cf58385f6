// Package sandbox runs agent containers on a container engine. Everything
// above it talks to the small Engine interface, so a Podman, Incus or
// Kubernetes backend only has to implement that.
package sandbox

import (
	"context"
	"errors"
	"io"
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
}

// Limits caps a container's resources. Zero means the engine's default.
type Limits struct {
	MemoryBytes int64
	CPUs        float64
	Pids        int64
}

// Spec describes one container. The hardening (no capabilities,
// no-new-privileges, init, non-root user) is not optional: a backend applies
// it to every container it creates.
type Spec struct {
	Name    string
	Image   string
	Cmd     []string
	Env     []string // NAME=value; never put secrets on Cmd
	User    string   // "uid:gid"
	WorkDir string
	Mounts  []Mount
	Tmpfs   map[string]string // container path -> mount options
	Labels  map[string]string
	Network string // "none", "bridge" or a network name; empty means "none"
	// Aliases are extra DNS names for the container on Network (a
	// user-defined network only).
	Aliases    []string
	ExtraHosts []string // "name:address", like docker --add-host
	Limits     Limits
	// Runtime is the OCI runtime the engine runs the container with, such
	// as "runsc" (gVisor); empty means the engine's default (runc).
	Runtime string
}

// Status is the engine's view of a container.
type Status string

const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusExited  Status = "exited"
)

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
}

// Engine is the container backend.
type Engine interface {
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
	// EnsureNetwork creates a bridge network with outbound NAT unless one
	// of that name exists.
	EnsureNetwork(ctx context.Context, name string, labels map[string]string) error
}
