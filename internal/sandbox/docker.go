package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Docker is the Engine backed by a Docker-compatible API (Docker, or Podman
// through its compatible socket). It honours DOCKER_HOST like the docker CLI.
type Docker struct {
	cli *client.Client
	// engineSockets are the host paths of container-engine sockets that must
	// never be mounted into a sandbox: whoever holds one is root on the host.
	engineSockets []string
	dockerHost    string // DOCKER_HOST as given, for error hints
	// podman is set when the API is Podman's compatible one: its quirks
	// live there (podman.go).
	podman *podmanQuirks
}

// NewDocker connects lazily: no request is made until the first call.
// The client starts at its newest API version and negotiates down to the
// daemon's on the first request (Docker 20.10 speaks 1.41).
func NewDocker() (*Docker, error) { return NewDockerAt("") }

// NewDockerAt is NewDocker for the engine at host (unix:///path/to/socket);
// "" means DOCKER_HOST or the default socket.
func NewDockerAt(host string) (*Docker, error) {
	opts := []client.Opt{client.FromEnv}
	given := os.Getenv(client.EnvOverrideHost)
	if host != "" {
		opts = append(opts, client.WithHost(host))
		given = host
	}
	cli, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Docker{
		cli:           cli,
		engineSockets: engineSockets(cli.DaemonHost()),
		dockerHost:    given,
	}, nil
}

// Close releases the client's connections.
func (d *Docker) Close() error {
	if d.podman != nil {
		return errors.Join(d.podman.close(), d.cli.Close())
	}
	return d.cli.Close()
}

// Ping checks that the daemon answers and settles the API version.
func (d *Docker) Ping(ctx context.Context) error {
	if _, err := d.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return d.engineError("ping container engine", err)
	}
	return nil
}

// Create creates (but does not start) a hardened container for spec.
func (d *Docker) Create(ctx context.Context, spec Spec) (string, error) {
	opts, err := d.createOptions(spec)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	res, err := d.containerCreate(ctx, opts)
	if err != nil {
		if cerrdefs.IsConflict(err) || d.podman != nil && strings.Contains(err.Error(), "already in use") {
			return "", fmt.Errorf("create container %s: the name is already in use; remove the old container (%s rm -f %s) or pick another name: %w",
				spec.Name, d.Kind(), spec.Name, err)
		}
		if cerrdefs.IsNotFound(err) {
			return "", fmt.Errorf("create container %s: image %s not found (build or import it first): %w: %w",
				spec.Name, spec.Image, ErrNotFound, err)
		}
		return "", d.engineError("create container "+spec.Name, err)
	}
	if err := d.checkCreatedRuntime(ctx, res.ID, spec); err != nil {
		return "", err
	}
	return res.ID, nil
}

// containerCreate is the one way this backend creates containers: every
// container, whatever its role, gets the engine's quirks (on Podman: ulimits
// and, rootless, the keep-id user namespace).
func (d *Docker) containerCreate(ctx context.Context, opts client.ContainerCreateOptions) (client.ContainerCreateResult, error) {
	if d.podman == nil {
		return d.cli.ContainerCreate(ctx, opts)
	}
	if err := d.podman.adjust(ctx, d, &opts); err != nil {
		return client.ContainerCreateResult{}, err
	}
	cli := d.cli
	if rt := opts.HostConfig.Runtime; rt != "" {
		// Podman ignores the field; the service chosen decides.
		var err error
		if cli, err = d.podman.runtimeClient(ctx, d, rt); err != nil {
			return client.ContainerCreateResult{}, err
		}
		opts.HostConfig.Runtime = ""
	}
	if opts.HostConfig.UsernsMode == "keep-id" {
		unlock, err := lockSubids(ctx, cli.DaemonHost())
		if err != nil {
			return client.ContainerCreateResult{}, err
		}
		defer unlock()
	}
	res, err := cli.ContainerCreate(ctx, opts)
	for try := 0; err != nil && podmanTransient(err) && try < 3; try++ {
		res, err = cli.ContainerCreate(ctx, opts)
	}
	return res, err
}

// Start starts a created container.
func (d *Docker) Start(ctx context.Context, id string) error {
	if _, err := d.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return d.engineError("start container "+id, err)
	}
	return nil
}

// Wait blocks until the container exits and returns its exit code. It works
// before Start, while running and after the exit.
func (d *Docker) Wait(ctx context.Context, id string) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// "not-running" would return at once for a container that is only
	// created, and "next-exit" would block forever for one that already
	// exited. So register a next-exit wait first (ContainerWait returns once
	// the daemon has registered it), then look at the state: an exit that
	// happened before the registration shows up there.
	wait := d.cli.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	select {
	case err := <-wait.Error:
		return 0, d.engineError("wait for container "+id, err)
	default:
	}
	st, err := d.Inspect(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("wait for container %s: %w", id, err)
	}
	switch st.Status {
	case StatusExited, StatusDead:
		return st.ExitCode, nil
	}
	select {
	case res := <-wait.Result:
		if res.Error != nil && res.Error.Message != "" {
			return int(res.StatusCode), fmt.Errorf("wait for container %s: %s", id, res.Error.Message)
		}
		return int(res.StatusCode), nil
	case err := <-wait.Error:
		return 0, d.engineError("wait for container "+id, err)
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for container %s: %w", id, ctx.Err())
	}
}

// Inspect reports the container's state; id may also be a name.
func (d *Docker) Inspect(ctx context.Context, id string) (State, error) {
	res, err := d.containerInspect(ctx, id)
	if err != nil {
		return State{}, d.engineError("inspect container "+id, err)
	}
	st, err := stateOf(res.Container)
	if d.podman != nil {
		st = podmanState(st)
	}
	return st, err
}

// Stop sends SIGTERM, then SIGKILL after timeout.
func (d *Docker) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(math.Ceil(timeout.Seconds()))
	if _, err := d.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		return d.engineError("stop container "+id, err)
	}
	return nil
}

// Remove force-removes the container and its anonymous volumes; a missing
// container is not an error.
func (d *Docker) Remove(ctx context.Context, id string) error {
	if d.networked(ctx, id) {
		return d.removeNetworked(ctx, id)
	}
	return d.remove(ctx, id)
}

func (d *Docker) remove(ctx context.Context, id string) error {
	_, err := d.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	for try := 0; err != nil && strings.Contains(err.Error(), "container state improper") && try < 20; try++ {
		// Podman: the container stopped between its check and its kill
		// (it was exiting as we removed it); once stopped it goes.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		_, err = d.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}
	if cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress") {
		// Another airlock process is removing it (a watcher recording the
		// run's end, say): wait for that to finish.
		return d.waitGone(ctx, id, err)
	}
	if err != nil && !cerrdefs.IsNotFound(err) {
		return d.engineError("remove container "+id, err)
	}
	return nil
}

func (d *Docker) waitGone(ctx context.Context, id string, cause error) error {
	for range 100 {
		if _, err := d.containerInspect(ctx, id); cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return d.engineError("remove container "+id, cause)
}

// List returns all containers, running or not, carrying every given label.
func (d *Docker) List(ctx context.Context, labels map[string]string) ([]State, error) {
	filters := client.Filters{}
	for k, v := range labels {
		filters.Add("label", k+"="+v)
	}
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filters})
	if err != nil {
		return nil, d.engineError("list containers", err)
	}
	// The list summary lacks exit codes and times; inspect each so List and
	// Inspect report the same State.
	states := make([]State, 0, len(res.Items))
	for _, c := range res.Items {
		st, err := d.Inspect(ctx, c.ID)
		if errors.Is(err, ErrNotFound) {
			continue // removed since the list was taken
		}
		if err != nil {
			return nil, err
		}
		states = append(states, st)
	}
	return states, nil
}

// Logs copies the container's stdout and stderr, as logged so far, to w.
func (d *Docker) Logs(ctx context.Context, id string, w io.Writer) error {
	res, err := d.containerInspect(ctx, id)
	if err != nil {
		return d.engineError("logs of container "+id, err)
	}
	rc, err := d.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return d.engineError("logs of container "+id, err)
	}
	defer rc.Close()
	// Without a TTY the engine multiplexes both streams into one with
	// 8-byte frame headers; with a TTY the stream is raw.
	if res.Container.Config != nil && res.Container.Config.Tty {
		_, err = io.Copy(w, rc)
	} else {
		_, err = stdcopy.StdCopy(w, w, rc)
	}
	if err != nil {
		return fmt.Errorf("logs of container %s: %w", id, err)
	}
	return nil
}

// ImageExists reports whether ref is present in the engine's image store.
func (d *Docker) ImageExists(ctx context.Context, ref string) (bool, error) {
	if _, err := d.cli.ImageInspect(ctx, ref); err != nil {
		if cerrdefs.IsNotFound(err) {
			return false, nil
		}
		return false, d.engineError("inspect image "+ref, err)
	}
	return true, nil
}

// containerInspect is the engine's inspect of a container. Podman fails
// the inspect of a container whose process is exiting at that moment (it
// reads the process's cgroup from /proc after the process has gone: "read
// /proc/N/cgroup: no such process"); once Podman has seen the exit the
// same inspect succeeds, so that failure is tried again for a while
// before it counts. Otherwise a List, or the Wait for a run's end, failed
// when some container ended at the wrong moment.
func (d *Docker) containerInspect(ctx context.Context, id string) (client.ContainerInspectResult, error) {
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if d.podman == nil {
		return res, err
	}
	deadline := time.Now().Add(podmanExitingGrace)
	for err != nil && podmanProcessGone(err) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(50 * time.Millisecond):
		}
		res, err = d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	}
	return res, err
}

// engineError wraps err with what was being done and classifies it as
// ErrNotFound or ErrEngineUnreachable (with a hint how to fix it).
func (d *Docker) engineError(doing string, err error) error {
	switch {
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w: %w", doing, ErrNotFound, err)
	case d.podman != nil && strings.Contains(err.Error(), "does not exist in database: no such container"):
		// Podman answers 500, not 404, for a container removed while it
		// looks it up (containers/podman#10120): List met this when another
		// container went away between the list and its inspect.
		return fmt.Errorf("%s: %w: %w", doing, ErrNotFound, err)
	case client.IsErrConnectionFailed(err) && d.podman != nil:
		return d.podman.unreachable(doing, d.cli.DaemonHost(), err)
	case client.IsErrConnectionFailed(err):
		hint := "or set DOCKER_HOST to your engine's socket (e.g. DOCKER_HOST=unix:///run/podman/podman.sock)"
		if d.dockerHost != "" {
			hint = fmt.Sprintf("or fix DOCKER_HOST=%s, which points at no running engine", d.dockerHost)
		}
		return fmt.Errorf("%s: %w at %s: is the Docker daemon running? start it with `sudo systemctl start docker` or `dockerd`, %s: %w",
			doing, ErrEngineUnreachable, d.cli.DaemonHost(), hint, err)
	default:
		return fmt.Errorf("%s: %w", doing, err)
	}
}

func stateOf(c container.InspectResponse) (State, error) {
	st := State{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), Image: c.Image}
	if c.Config != nil {
		st.Image = c.Config.Image
		st.Labels = c.Config.Labels
	}
	if c.State == nil {
		return st, nil
	}
	st.Status = statusOf(c.State.Status)
	st.ExitCode = c.State.ExitCode
	st.OOMKilled = c.State.OOMKilled
	if st.Status == StatusDead {
		st.Why = c.State.Error
	}
	var err error
	if st.StartedAt, err = parseEngineTime(c.State.StartedAt); err != nil {
		return State{}, fmt.Errorf("container %s: started at: %w", c.ID, err)
	}
	if st.FinishedAt, err = parseEngineTime(c.State.FinishedAt); err != nil {
		return State{}, fmt.Errorf("container %s: finished at: %w", c.ID, err)
	}
	return st, nil
}

// statusOf maps Docker's (and Podman's compatible API's) container states
// onto airlock's.
func statusOf(s container.ContainerState) Status {
	switch s {
	case container.StateCreated,
		"configured", "initialized": // Podman's words for created
		return StatusCreated
	case container.StateRunning, container.StateRestarting,
		"stopping": // Podman's
		return StatusRunning
	case container.StatePaused:
		return StatusPaused
	case container.StateExited,
		"stopped": // Podman's, for exited before its clean-up
		return StatusExited
	case container.StateDead, container.StateRemoving:
		return StatusDead
	}
	return StatusUnknown
}

// parseEngineTime maps the engine's "never" (0001-01-01T00:00:00Z, or empty)
// to the zero time.
func parseEngineTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	if t.Year() <= 1 {
		return time.Time{}, nil
	}
	return t, nil
}

// EngineSockets lists where engine sockets live on a Linux host, plus the
// one at daemonHost (unix://…), if any.
func EngineSockets(daemonHost string) []string { return engineSockets(daemonHost) }

func engineSockets(daemonHost string) []string {
	paths := []string{
		"/var/run/docker.sock", "/run/docker.sock", "/run/docker",
		"/run/podman", "/var/run/podman",
		"/run/containerd", "/var/run/containerd",
	}
	// A rootless Podman's, also where XDG_RUNTIME_DIR is not set.
	paths = append(paths, filepath.Join("/run/user", strconv.Itoa(os.Getuid()), "podman"))
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		paths = append(paths, filepath.Join(rt, "docker.sock"), filepath.Join(rt, "podman"), filepath.Join(rt, "containerd"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		paths = append(paths, filepath.Join(home, ".docker", "run"))
	}
	if p, ok := strings.CutPrefix(daemonHost, "unix://"); ok {
		paths = append(paths, p)
	}
	return paths
}
