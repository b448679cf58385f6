package sandbox

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	pathpkg "path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"
)

// Podman speaks Docker's API on its own socket (`podman system service`),
// so the Podman engine is the Docker backend with Podman's quirks switched
// on. They are:
//
//   - Ulimits. Podman asks the runtime for nofile and nproc limits above the
//     hard limits of many hosts (and then starts nothing), so both are given
//     explicitly, within the host's.
//   - Rootless user namespaces. A rootless Podman maps container uids onto
//     the user's subordinate range, so a file the agent (container uid U)
//     creates in a bind mount would belong to some uid 10xxxx on the host.
//     With the keep-id user namespace the invoking user's uid and gid map
//     onto themselves: the agent runs as the user and its files are the
//     user's, as on Docker. The proxy gets the same mapping, so the Unix
//     sockets it creates in the run's directory are the user's too.
//   - Resource limits. A rootless Podman on cgroup v1 cannot set memory,
//     CPU or pids limits and drops them (with a warning in the create
//     response). Limits reports that, so callers can say so.

// podmanQuirks is what the Docker backend does differently on Podman.
type podmanQuirks struct {
	// info is Podman's own description of itself, fetched on first use
	// (the compatible /info does not say whether it runs rootless).
	mu    sync.Mutex
	info  *podmanInfo
	nproc uint64 // the nproc ulimit containers get
	// runtimeClients reach the services that create containers under a
	// runtime other than the main service's default (podman_runtime.go).
	runtimeClients map[string]*client.Client
}

// podmanInfo is the part of Podman's /libpod/info airlock needs.
type podmanInfo struct {
	Host struct {
		CgroupsVersion string `json:"cgroupVersion"`
		Security       struct {
			Rootless bool `json:"rootless"`
		} `json:"security"`
		// OCIRuntime is the service's default runtime, which every
		// container it creates runs under.
		OCIRuntime struct {
			Name string `json:"name"`
			Path string `json:"path"`
		} `json:"ociRuntime"`
	} `json:"host"`
	// Runtimes are the programs the service runs each runtime it knows as
	// (from the compatible /info: Podman's own names only its default).
	Runtimes map[string]string `json:"runtimes,omitempty"`
}

// NewPodman connects lazily to Podman's Docker-compatible API at host (a
// unix:// URL). An empty host means CONTAINER_HOST (Podman's own variable),
// else the socket of the Podman that runs as this user: rootful for root,
// rootless for everyone else.
func NewPodman(host string) (*Docker, error) {
	if host == "" {
		host = PodmanHost(os.Getenv, os.Getuid())
	}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("podman client for %s: %w", host, err)
	}
	socks := engineSockets(cli.DaemonHost())
	for _, s := range podmanRuntimeSockets(cli.DaemonHost()) {
		socks = append(socks, s)
	}
	return &Docker{
		cli:           cli,
		engineSockets: socks,
		podman:        &podmanQuirks{nproc: nprocLimit()},
	}, nil
}

// PodmanHost is where Podman's API listens for a user: CONTAINER_HOST when
// set, else the rootless socket in the user's runtime directory, or the
// rootful one for root.
func PodmanHost(getenv func(string) string, uid int) string {
	if h := getenv("CONTAINER_HOST"); h != "" {
		return h
	}
	if uid == 0 {
		return "unix:///run/podman/podman.sock"
	}
	rt := getenv("XDG_RUNTIME_DIR")
	if rt == "" {
		rt = filepath.Join("/run/user", strconv.Itoa(uid))
	}
	return "unix://" + filepath.Join(rt, "podman", "podman.sock")
}

// nprocLimit is the nproc ulimit Podman's containers get: the most this
// process may have, and no more than the kernel's pid_max (Podman lowers its
// own limit to that, and a container cannot be given more than Podman has).
func nprocLimit() uint64 {
	limit := uint64(32768)
	if data, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil && n > 0 {
			limit = n
		}
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &rl); err == nil && rl.Max < limit {
		limit = rl.Max
	}
	return limit
}

// Kind is the engine's kind: KindDocker or KindPodman.
func (d *Docker) Kind() string {
	if d.podman != nil {
		return KindPodman
	}
	return KindDocker
}

// Rootless reports whether the engine runs without root, so that container
// uids are not host uids. Only Podman is asked; the answer is cached.
func (d *Docker) Rootless(ctx context.Context) (bool, error) {
	if d.podman == nil {
		return false, nil
	}
	info, err := d.podman.describe(ctx, d)
	return info.Host.Security.Rootless, err
}

// LimitsIgnored says why the engine drops memory, CPU and pids limits, or
// "" when it honours them: a rootless Podman on cgroup v1 cannot set them.
func (d *Docker) LimitsIgnored(ctx context.Context) (string, error) {
	if d.podman == nil {
		return "", nil
	}
	info, err := d.podman.describe(ctx, d)
	if err != nil {
		return "", err
	}
	if info.Host.Security.Rootless && info.Host.CgroupsVersion == "v1" {
		return "rootless Podman cannot set memory, CPU or pids limits on a cgroup v1 host", nil
	}
	return "", nil
}

// describe asks Podman's own API about the engine; a failure is not
// remembered, so a later call may find the service up.
func (q *podmanQuirks) describe(ctx context.Context, d *Docker) (podmanInfo, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.info == nil {
		info, err := podmanDescribe(ctx, d.cli)
		if errors.As(err, new(dialError)) {
			return podmanInfo{}, q.unreachable("ask Podman about itself", d.cli.DaemonHost(), err)
		}
		if err != nil {
			return podmanInfo{}, fmt.Errorf("ask Podman about itself: %w", err)
		}
		q.info = &info
	}
	return *q.info, nil
}

// podmanDescribe is the description of the Podman service cli talks to,
// from the cache when it holds one for the service's socket.
func podmanDescribe(ctx context.Context, cli *client.Client) (podmanInfo, error) {
	key := podmanSocketKey(cli.DaemonHost())
	if info, ok := readPodmanInfoCache(key); ok {
		return info, nil
	}
	var info podmanInfo
	if err := podmanGet(ctx, cli, "/v4.0.0/libpod/info", &info); err != nil {
		return podmanInfo{}, err
	}
	res, err := cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return podmanInfo{}, fmt.Errorf("GET /info: %w", err)
	}
	info.Runtimes = make(map[string]string, len(res.Info.Runtimes))
	for name, rt := range res.Info.Runtimes {
		info.Runtimes[name] = rt.Path
	}
	writePodmanInfoCache(key, info)
	return info, nil
}

// podmanGet decodes the answer to a GET of Podman's own API (path) over
// the client's connection into out.
func podmanGet(ctx context.Context, cli *client.Client, path string, out any) error {
	dial := cli.Dialer()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://podman"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return dialError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s (is this Podman 4 or newer?)", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// podmanState maps what Podman's compatible API reports: its states are
// mapped with Docker's (statusOf), and image names come back qualified
// (docker.io/library/x:1 or localhost/x:1 for the x:1 the container was
// created from).
func podmanState(st State) State {
	st.Image = podmanRef(st.Image)
	return st
}

// podmanRef is the name airlock gave an image Podman reports qualified
// (docker.io/library/x:1, localhost/x:1 for x:1).
func podmanRef(ref string) string {
	for _, prefix := range []string{"docker.io/library/", "localhost/"} {
		if rest, ok := strings.CutPrefix(ref, prefix); ok {
			return rest
		}
	}
	return ref
}

// podmanRefs is podmanRef of each of refs.
func podmanRefs(refs []string) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = podmanRef(r)
	}
	return out
}

// podmanTransient reports a create failure that goes away when tried
// again: Podman 4.3 now and then fails to read the user's subordinate ids
// when rootless containers are created at the same time, and then says
// keep-id "requires additional UIDs".
func podmanTransient(err error) bool {
	return strings.Contains(err.Error(), "keep-id requires additional UIDs")
}

// podmanExitingGrace is how long an inspect that meets a container's
// process exiting (podmanProcessGone) is tried again: Podman notices the
// exit within milliseconds, seconds under load.
const podmanExitingGrace = 5 * time.Second

// podmanProcessGone reports an inspect that Podman failed because the
// container's process went away while Podman read its /proc entries.
func podmanProcessGone(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "read /proc/") && strings.Contains(msg, "no such process")
}

// lockSubids holds, until unlock, the lock beside a rootless Podman's
// socket that every airlock process takes to create a container in the
// keep-id user namespace. For each such container Podman 4.3 reads the
// user's subordinate ids through libsubid, which is not safe to call from
// two threads at once: creates at the same moment fail now and then
// ("keep-id requires additional UIDs", podmanTransient), or crash the API
// service with a SIGSEGV in subid_get_gid_ranges (podman#23264), after
// which no run finds the engine until the service is started again. A
// socket directory airlock cannot write in leaves creates unlocked, as
// they were: the lock only makes that crash unlikely.
func lockSubids(ctx context.Context, host string) (unlock func(), err error) {
	sock, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return func() {}, nil
	}
	path := sock + ".airlock-create.lock"
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return func() {}, nil
	}
	// Root reaching a user's service (a test, an administrator) makes the
	// lock the user's, or the user's own airlock could not open it.
	var dir unix.Stat_t
	if os.Geteuid() == 0 && unix.Stat(filepath.Dir(sock), &dir) == nil && dir.Uid != 0 {
		unix.Fchown(fd, int(dir.Uid), int(dir.Gid))
	}
	unlock = func() { unix.Close(fd) }
	switch err := flockWait(ctx, fd); {
	case err == nil:
		return unlock, nil
	case ctx.Err() != nil:
		unlock()
		return nil, fmt.Errorf("wait for the lock %s to create a container: %w", path, err)
	}
	unlock()
	return func() {}, nil
}

// podmanHostAddr is where containers on a Podman network reach services
// the host runs. Podman's bridge has no address on the host until a
// container joins it, and a rootless Podman's bridges are not on the host at
// all (they reach it through slirp4netns, which connects from the host). Any
// address of the host's own that is not loopback serves both: the host's
// first global IPv4 address.
func podmanHostAddr() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("find the host's address: %w", err)
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String(), nil
			}
		}
	}
	return "", errors.New("the host has no IPv4 address besides loopback for Podman's containers to reach it on")
}

// dialError is a request that reached no engine.
type dialError struct{ error }

func (e dialError) Unwrap() error { return e.error }

// adjust applies Podman's quirks to a create request.
func (q *podmanQuirks) adjust(ctx context.Context, d *Docker, opts *client.ContainerCreateOptions) error {
	info, err := q.describe(ctx, d)
	if err != nil {
		return err
	}
	hc := opts.HostConfig
	hc.Ulimits = append(hc.Ulimits, &container.Ulimit{Name: "nproc", Soft: int64(q.nproc), Hard: int64(q.nproc)})
	if info.Host.Security.Rootless {
		hc.UsernsMode = "keep-id"
	}
	return nil
}

// unreachable explains how to start Podman's API service.
func (q *podmanQuirks) unreachable(doing, host string, err error) error {
	start := "podman system service --time=0 &"
	if os.Getuid() == 0 {
		start = "podman system service --time=0 unix:///run/podman/podman.sock &"
	}
	return fmt.Errorf("%s: %w at %s: is Podman's API service running? start it with `systemctl --user start podman.socket` (as root: `systemctl start podman.socket`) or `%s`, or set CONTAINER_HOST to its socket: %w",
		doing, ErrEngineUnreachable, host, start, err)
}

// podmanArchive mends the names in a tar stream Podman 4.3 made of path in a
// container: of a directory that is a mount point (the run's /workspace)
// in a container that is not running, it names the entries "/", "/a.txt",
// … instead of "workspace", "workspace/a.txt", …, as it does while the
// container runs and as Docker always does. Such a stream is recognised by
// its first entry, "/", and its names (and hard links' targets) are put
// under path's base name; any other stream passes unchanged. Symbolic
// links' targets are the container's content and are left as they are.
func podmanArchive(rc io.ReadCloser, path string) io.ReadCloser {
	base := pathpkg.Base(pathpkg.Clean("/" + path))
	pr, pw := io.Pipe()
	go func() {
		defer rc.Close()
		tr := tar.NewReader(rc)
		tw := tar.NewWriter(pw)
		rename := false
		for first := true; ; first = false {
			hdr, err := tr.Next()
			if err == io.EOF {
				pw.CloseWithError(tw.Close())
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if first {
				rename = hdr.Name == "/" && base != "/"
			}
			if rename {
				hdr.Name = podmanEntryName(base, hdr.Name)
				if hdr.Typeflag == tar.TypeLink {
					hdr.Linkname = podmanEntryName(base, hdr.Linkname)
				}
			}
			if err := tw.WriteHeader(hdr); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

// podmanEntryName puts an absolute entry name under base; a relative one
// is left for the archive's reader to judge.
func podmanEntryName(base, name string) string {
	rest, ok := strings.CutPrefix(name, "/")
	if !ok {
		return name
	}
	if rest == "" {
		return base + "/"
	}
	return base + "/" + rest
}
