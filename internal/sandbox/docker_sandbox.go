package sandbox

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/client"
)

// On Docker a sandbox is a sidecar: the proxy is a container on a bridge
// network with outbound NAT, running the airlock binary mounted read-only
// into an empty image; the agent's container has network "none"; the two
// share a directory of Unix sockets on the host, which a relay in front of
// the agent's command turns into loopback ports.
const (
	// DockerEgressNetwork is the proxy's default network.
	DockerEgressNetwork = "airlock-egress"
	// DockerProxyImage is the sidecar's image: an empty root file system,
	// since the static airlock binary is all the proxy needs.
	DockerProxyImage = "airlock-proxy:1"

	// egressNetworkLabel marks the networks the backend made, so that only
	// those are ever pruned.
	egressNetworkLabel = "airlock.role"
	egressNetworkRole  = "egress"

	socketDir    = "/airlock/sock"
	proxyHealthy = 20 * time.Second
)

// CreateSandbox creates the agent's container while the proxy starts, and
// starts the agent as soon as both are there, without waiting for the proxy
// to answer: the relay in the agent's container waits for the proxy's
// socket (egress.Relay), so until the proxy answers the agent's traffic
// waits, and it fails closed if the proxy never does. Creating and starting
// cost the engine about as much as the proxy takes to come up, so side by
// side they take both off every run's start-up. A proxy that does not come
// up takes the agent down with it.
func (d *Docker) CreateSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	agent := spec.Agent
	agent.Mounts = append(append([]Mount(nil), agent.Mounts...),
		Mount{Source: spec.Binary, Target: BinaryPath, ReadOnly: true},
		Mount{Source: filepath.Join(spec.Dir, "sock"), Target: socketDir},
	)
	agent.Cmd = RelayCommand(agent.Cmd, spec.RelayFlags)
	// The agent's container mounts the socket directory, which must exist
	// when it is created; prepareProxy gives it its owner.
	if err := os.MkdirAll(filepath.Join(spec.Dir, "sock"), 0o700); err != nil {
		return Sandbox{}, fmt.Errorf("create the proxy's socket directory: %w", err)
	}
	type created struct {
		id  string
		err error
	}
	// Once an earlier leg's sockets are gone, the agent's container is
	// created and started while the proxy is: the relay never reaches a
	// stale socket, and waits for the new one.
	network, err := d.prepareProxy(ctx, spec)
	if err != nil {
		return Sandbox{}, err
	}
	agentc := make(chan created, 1)
	go func() {
		id, err := d.Create(ctx, agent)
		if err == nil {
			err = spec.agentReady(ctx)
		}
		if err == nil {
			err = d.Start(ctx, id)
		}
		agentc <- created{id, err}
	}()
	proxy, perr := d.runProxy(ctx, spec, network)
	a := <-agentc
	undo := func() {
		ctx := context.WithoutCancel(ctx)
		d.remove(ctx, agent.Name)
		d.RemoveProxy(ctx, spec.Proxy.Name)
	}
	if perr != nil || a.err != nil {
		undo()
		return Sandbox{}, cmp.Or(perr, a.err)
	}
	sock := filepath.Join(spec.Dir, "sock", filepath.Base(APISocket))
	if err := waitProxy(ctx, d, proxy, sock); err != nil {
		var exited *proxyExitedError
		if errors.As(err, &exited) && exited.code == 0 && d.endsWithin(ctx, a.id, agentEndGrace) {
			// The agent was done before the proxy was seen answering
			// (a setup command that failed at once): its relay's
			// lifeline ended the proxy, as at the end of every run.
			// The run goes on to collect the agent's outcome.
			return Sandbox{Agent: a.id, Proxy: proxy}, nil
		}
		undo()
		return Sandbox{}, fmt.Errorf("egress proxy %s: %w", spec.Proxy.Name, err)
	}
	return Sandbox{Agent: a.id, Proxy: proxy}, nil
}

// agentEndGrace is how long an agent whose proxy ended cleanly may take to
// be seen exited: the proxy ends when the relay's lifeline does, which can
// be a moment before the engine records the container's exit (rootless
// Podman's conmon).
const agentEndGrace = 5 * time.Second

// endsWithin reports whether a container is seen to have run and stopped
// within grace.
func (d *Docker) endsWithin(ctx context.Context, id string, grace time.Duration) bool {
	deadline := time.Now().Add(grace)
	for {
		st, err := d.Inspect(ctx, id)
		if err != nil {
			return false
		}
		if st.Status == StatusExited || st.Status == StatusDead {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// proxyExitedError is a proxy that exited before it was seen answering.
type proxyExitedError struct {
	code   int
	output string
}

func (e *proxyExitedError) Error() string {
	return fmt.Sprintf("it exited with status %d: %s", e.code, e.output)
}

// RestartSandbox starts a new proxy, then the existing agent container.
func (d *Docker) RestartSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	proxy, err := d.startProxy(ctx, spec)
	if err != nil {
		return Sandbox{}, err
	}
	if err := d.Start(ctx, spec.Agent.Name); err != nil {
		d.RemoveProxy(context.WithoutCancel(ctx), spec.Proxy.Name)
		return Sandbox{}, err
	}
	st, err := d.Inspect(ctx, spec.Agent.Name)
	if err != nil {
		return Sandbox{}, err
	}
	return Sandbox{Agent: st.ID, Proxy: proxy}, nil
}

// RemoveProxy stops and removes the proxy under the network lock.
func (d *Docker) RemoveProxy(ctx context.Context, name string) error {
	return d.removeNetworked(ctx, name)
}

// startProxy starts a sandbox's proxy and waits until it answers. A proxy
// left by an earlier leg of the sandbox is replaced.
func (d *Docker) startProxy(ctx context.Context, spec SandboxSpec) (string, error) {
	id, err := d.launchProxy(ctx, spec)
	if err != nil {
		return "", err
	}
	if err := d.awaitProxy(ctx, spec, id); err != nil {
		return "", err
	}
	return id, nil
}

// launchProxy starts a sandbox's proxy, replacing one left by an earlier
// leg and that leg's sockets, without waiting for it to answer.
func (d *Docker) launchProxy(ctx context.Context, spec SandboxSpec) (string, error) {
	network, err := d.prepareProxy(ctx, spec)
	if err != nil {
		return "", err
	}
	return d.runProxy(ctx, spec, network)
}

// prepareProxy readies what a sandbox's proxy needs, its network, image and
// socket directory, and clears what an earlier leg left: its proxy and its
// sockets. It returns the proxy's network.
func (d *Docker) prepareProxy(ctx context.Context, spec SandboxSpec) (string, error) {
	p := spec.Proxy
	network := p.Network
	if network == "" {
		network = DockerEgressNetwork
		if err := withNetLock(ctx, func() error {
			return d.ensureNetwork(ctx, network, map[string]string{egressNetworkLabel: egressNetworkRole})
		}); err != nil {
			return "", err
		}
	}
	if err := d.ensureProxyImage(ctx); err != nil {
		return "", err
	}
	sockDir := filepath.Join(spec.Dir, "sock")
	if err := os.MkdirAll(sockDir, 0o700); err != nil {
		return "", fmt.Errorf("create the proxy's socket directory: %w", err)
	}
	// The proxy runs as the agent's user and must make its sockets here.
	if uid, gid, ok := numericUser(p.User); ok {
		if err := os.Lchown(sockDir, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("create the proxy's socket directory: %w", err)
		}
	}
	// Stale sockets of an earlier leg would answer nothing.
	for _, s := range []string{ProxySocket, APISocket, SSHAgentSocket} {
		os.Remove(filepath.Join(sockDir, filepath.Base(s)))
	}
	if err := d.removeNetworked(ctx, p.Name); err != nil {
		return "", err
	}
	return network, nil
}

// runProxy creates and starts a prepared proxy.
func (d *Docker) runProxy(ctx context.Context, spec SandboxSpec, network string) (string, error) {
	p := spec.Proxy
	sockDir := filepath.Join(spec.Dir, "sock")
	var id string
	err := withNetLock(ctx, func() error {
		opts, err := d.createOptionsOn(Spec{
			Name:  p.Name,
			Image: DockerProxyImage,
			Cmd:   ProxyCommand(),
			Env:   p.Env,
			User:  p.User,
			Mounts: append([]Mount{
				{Source: spec.Binary, Target: BinaryPath, ReadOnly: true},
				{Source: sockDir, Target: socketDir},
				{Source: p.ConfigDir, Target: ProxyConfigDir},
			}, p.Mounts...),
			Tmpfs:      []Tmpfs{{Target: "/tmp", SizeBytes: 64 << 20}},
			Labels:     p.Labels,
			ExtraHosts: p.ExtraHosts,
			Limits:     p.Limits,
		}, network)
		if err != nil {
			return fmt.Errorf("create the egress proxy %s: %w", p.Name, err)
		}
		res, err := d.containerCreate(ctx, opts)
		if err != nil {
			return d.engineError("create the egress proxy "+p.Name, err)
		}
		id = res.ID
		if err := d.Start(ctx, id); err != nil {
			return fmt.Errorf("start the egress proxy: %w", err)
		}
		return nil
	})
	if err != nil {
		d.RemoveProxy(context.WithoutCancel(ctx), p.Name)
		return "", err
	}
	return id, nil
}

// awaitProxy waits until a launched proxy answers; one that does not is
// removed.
func (d *Docker) awaitProxy(ctx context.Context, spec SandboxSpec, id string) error {
	sock := filepath.Join(spec.Dir, "sock", filepath.Base(APISocket))
	if err := waitProxy(ctx, d, id, sock); err != nil {
		d.RemoveProxy(context.WithoutCancel(ctx), spec.Proxy.Name)
		return fmt.Errorf("egress proxy %s: %w", spec.Proxy.Name, err)
	}
	return nil
}

// waitProxy polls the proxy's health endpoint until it answers, or the
// proxy exits (then its output says why).
func waitProxy(ctx context.Context, d Engine, id, socket string) error {
	// A Unix socket's path is limited to 107 bytes, and a run directory
	// under a long home or temporary directory exceeds it; through an open
	// descriptor of the directory any path is short.
	dir, err := os.Open(filepath.Dir(socket))
	if err != nil {
		return err
	}
	defer dir.Close()
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(socket))
	hc := &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", short)
		}},
		Timeout: time.Second,
	}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(proxyHealthy)
	for {
		resp, err := hc.Get("http://proxy/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if st, ierr := d.Inspect(ctx, id); ierr == nil && (st.Status == StatusExited || st.Status == StatusDead) {
			var out bytes.Buffer
			d.Logs(ctx, id, &out)
			return &proxyExitedError{code: st.ExitCode, output: string(bytes.TrimSpace(out.Bytes()))}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("it did not become healthy within %s", proxyHealthy)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// ensureProxyImage imports the sidecar's empty image once.
func (d *Docker) ensureProxyImage(ctx context.Context) error {
	if ok, err := d.ImageExists(ctx, DockerProxyImage); err != nil {
		return err
	} else if ok {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"tmp/", 0o1777}, {"airlock/", 0o755}, {"airlock/bin/", 0o755}, {"airlock/sock/", 0o755}, {"airlock/egress/", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir.name, Mode: dir.mode}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := d.ImportImage(ctx, &buf, DockerProxyImage); err != nil {
		return fmt.Errorf("make the proxy image: %w", err)
	}
	return nil
}

// networked reports whether a container is attached to a network other
// than "none": removing it changes that network's endpoints.
func (d *Docker) networked(ctx context.Context, id string) bool {
	res, err := d.containerInspect(ctx, id)
	if err != nil || res.Container.HostConfig == nil {
		return false
	}
	mode := string(res.Container.HostConfig.NetworkMode)
	return mode != "none" && mode != ""
}

// PruneNetworks removes the egress networks this backend made that no
// container uses, and returns their names. The engine checks "unused"
// itself, so a network a container joined meanwhile is left alone; a
// network without the label (a user's own) is never touched.
func (d *Docker) PruneNetworks(ctx context.Context) ([]string, error) {
	var nets []string
	err := withNetLock(ctx, func() error {
		filters := client.Filters{}
		filters.Add("label", egressNetworkLabel+"="+egressNetworkRole)
		res, err := d.cli.NetworkPrune(ctx, client.NetworkPruneOptions{Filters: filters})
		if err != nil {
			return d.engineError("prune networks", err)
		}
		nets = res.Report.NetworksDeleted
		return nil
	})
	return nets, err
}

// HostAddress is the host's address on Docker's default bridge, which
// every bridge network's containers reach.
func (d *Docker) HostAddress(ctx context.Context) (string, error) {
	return d.GatewayIP(ctx, "bridge")
}

// numericUser parses "uid:gid".
func numericUser(user string) (uid, gid int, ok bool) {
	u, g, found := strings.Cut(user, ":")
	if !found {
		return 0, 0, false
	}
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	return uid, gid, err1 == nil && err2 == nil
}
