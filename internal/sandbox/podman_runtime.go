package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/moby/client"
)

// Podman's API, the compatible one and its own alike (up to Podman 5),
// creates every container under the default runtime of the service that
// answers: Podman 4.3 takes the compatible HostConfig.Runtime and its own
// oci_runtime and ignores both. A service started with another default
// (`podman --runtime runsc system service`) creates its containers under
// that one, in the same container store. So a container that must run
// under runtime R is created through the same Podman's service for R, which
// listens on podman-R.sock beside the main socket; everything else (start,
// exec, wait, stop, remove) goes through the main service, which runs a
// container under the runtime recorded at its creation, by name. Both
// services must therefore resolve R to the same program: it is registered
// in containers.conf ([engine.runtimes]), which a service reads when it
// starts.

// PodmanRuntimeHost is where the service of the Podman at host (a unix://
// URL) whose default runtime is name listens: podman-<name>.sock beside
// host's socket. It is "" for a host that is not a Unix socket or a name
// that cannot be part of a file name.
func PodmanRuntimeHost(host, name string) string {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok || name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return ""
	}
	return "unix://" + filepath.Join(filepath.Dir(path), "podman-"+name+".sock")
}

// podmanRuntimeSockets lists the runtime services' sockets beside the
// Podman socket at host, by runtime name.
func podmanRuntimeSockets(host string) map[string]string {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return nil
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "podman-*.sock"))
	out := make(map[string]string, len(matches))
	for _, m := range matches {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(m), "podman-"), ".sock")
		if fi, err := os.Stat(m); err == nil && fi.Mode()&os.ModeSocket != 0 && name != "" {
			out[name] = m
		}
	}
	return out
}

// podmanRuntimes lists the runtimes containers can be created under: the
// main service's default, and one for each runtime service beside it.
func (q *podmanQuirks) runtimes(ctx context.Context, d *Docker) ([]string, error) {
	info, err := q.describe(ctx, d)
	if err != nil {
		return nil, err
	}
	names := []string{info.Host.OCIRuntime.Name}
	for name := range podmanRuntimeSockets(d.cli.DaemonHost()) {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// runtimeClient is the client of the service that creates containers
// under the runtime name, checked on first use: it answers, runs name by
// default, is the same Podman (rootless or not) as the main service, and
// both services run name as the same program.
func (q *podmanQuirks) runtimeClient(ctx context.Context, d *Docker, name string) (*client.Client, error) {
	main, err := q.describe(ctx, d)
	if err != nil {
		return nil, err
	}
	if name == main.Host.OCIRuntime.Name {
		return d.cli, nil
	}
	q.mu.Lock()
	cli := q.runtimeClients[name]
	q.mu.Unlock()
	if cli != nil {
		return cli, nil
	}
	mainHost := d.cli.DaemonHost()
	host := PodmanRuntimeHost(mainHost, name)
	sock := strings.TrimPrefix(host, "unix://")
	if fi, err := os.Stat(sock); host == "" || err != nil || fi.Mode()&os.ModeSocket == 0 {
		have, _ := q.runtimes(ctx, d)
		start := "podman --runtime " + name + " system service --time=0 " + host
		if host == "" {
			start = "podman --runtime " + name + " system service --time=0 unix:///path/podman-" + name + ".sock beside Podman's socket"
		}
		return nil, fmt.Errorf("runtime %q is not one the container engine has (it has: %s): Podman's API creates every container under its service's default runtime, so airlock creates them through a second service of the same Podman whose default is %s, and none listens on %s; register %s in containers.conf ([engine.runtimes]) and start `%s &` as the user who runs Podman (scripts/setup.sh does both for gVisor; see docs/gvisor.md), or choose another with [sandbox] runtime or --runtime",
			name, strings.Join(have, ", "), name, sock, name, start)
	}
	cli, err = client.New(client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("podman client for %s: %w", host, err)
	}
	fail := func(format string, args ...any) (*client.Client, error) {
		cli.Close()
		return nil, fmt.Errorf("runtime %q on Podman: the service at %s: %s", name, sock, fmt.Sprintf(format, args...))
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fail("%v; start it again with `podman --runtime %s system service --time=0 %s &` (see docs/gvisor.md)", err, name, host)
	}
	info, err := podmanDescribe(ctx, cli)
	if err != nil {
		return fail("ask it about itself: %v", err)
	}
	switch path, ok := main.Runtimes[name]; {
	case info.Host.OCIRuntime.Name != name:
		return fail("its default runtime is %q, not %q: start it with `podman --runtime %s system service`", info.Host.OCIRuntime.Name, name, name)
	case info.Host.Security.Rootless != main.Host.Security.Rootless:
		return fail("it is not the same Podman as the one at %s (one is rootless, the other not): run it as the user who runs that one", mainHost)
	case !ok || path != info.Host.OCIRuntime.Path:
		return fail("it runs %s as %s, but the service at %s (which starts the containers) as %q: both must run it as the same program, and a service reads containers.conf ([engine.runtimes]) only when it starts: restart the one started before %s was registered there (see docs/gvisor.md)",
			name, info.Host.OCIRuntime.Path, mainHost, path, name)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if other := q.runtimeClients[name]; other != nil {
		cli.Close()
		return other, nil
	}
	if q.runtimeClients == nil {
		q.runtimeClients = map[string]*client.Client{}
	}
	q.runtimeClients[name] = cli
	return cli, nil
}

// createdRuntime is the runtime Podman recorded for a container: its
// compatible API reports every one as "oci".
func (q *podmanQuirks) createdRuntime(ctx context.Context, d *Docker, id string) (string, error) {
	var c struct {
		OCIRuntime string `json:"OCIRuntime"`
	}
	if err := podmanGet(ctx, d.cli, "/v4.0.0/libpod/containers/"+url.PathEscape(id)+"/json", &c); err != nil {
		return "", err
	}
	return c.OCIRuntime, nil
}

// close closes the runtime services' clients.
func (q *podmanQuirks) close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	for _, cli := range q.runtimeClients {
		errs = append(errs, cli.Close())
	}
	q.runtimeClients = nil
	return errors.Join(errs...)
}
