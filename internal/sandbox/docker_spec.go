package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// nofileLimit is set explicitly because Podman's default exceeds the hard
// limit of some hosts (and then fails to start anything); Docker accepts it.
const nofileLimit = 20000

// createOptions turns spec into the engine's create request, with the
// hardening every sandbox gets. Every field used here exists in API 1.25+,
// so Docker 20.10 (API 1.41) honours all of them.
func (d *Docker) createOptions(spec Spec) (client.ContainerCreateOptions, error) {
	return d.createOptionsOn(spec, "none")
}

// createOptionsOn is createOptions for a container on network netName: only
// a sandbox's proxy has one.
func (d *Docker) createOptionsOn(spec Spec, netName string) (client.ContainerCreateOptions, error) {
	if spec.Image == "" {
		return client.ContainerCreateOptions{}, errors.New("no image given")
	}
	if err := checkUser(spec.User); err != nil {
		return client.ContainerCreateOptions{}, err
	}
	mounts, err := d.bindMounts(spec.Mounts)
	if err != nil {
		return client.ContainerCreateOptions{}, err
	}
	res, err := resources(spec.Limits)
	if err != nil {
		return client.ContainerCreateOptions{}, err
	}
	tmpfs, err := tmpfsOptions(spec.Tmpfs)
	if err != nil {
		return client.ContainerCreateOptions{}, err
	}
	var hosts []string
	for _, h := range spec.ExtraHosts {
		if h.Name == "" || !h.Addr.IsValid() || strings.ContainsAny(h.Name, ": \t\n") {
			return client.ContainerCreateOptions{}, fmt.Errorf("extra host %q -> %v: want a name and an address", h.Name, h.Addr)
		}
		hosts = append(hosts, h.Name+":"+h.Addr.String())
	}
	useInit := true
	return client.ContainerCreateOptions{
		Name: spec.Name,
		Config: &container.Config{
			Image:      spec.Image,
			Cmd:        spec.Cmd,
			Env:        spec.Env,
			User:       spec.User,
			WorkingDir: spec.WorkDir,
			Labels:     spec.Labels,
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    container.NetworkMode(netName),
			ExtraHosts:     hosts,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges"},
			Init:           &useInit,
			Privileged:     false,
			ReadonlyRootfs: false,
			AutoRemove:     false,
			Tmpfs:          tmpfs,
			Mounts:         mounts,
			Resources:      res,
			Runtime:        spec.Runtime,
		},
	}, nil
}

// tmpfsOptions turns tmpfs mounts into Docker's option strings.
func tmpfsOptions(ts []Tmpfs) (map[string]string, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(ts))
	for _, t := range ts {
		if !filepath.IsAbs(t.Target) || strings.Contains(t.Target, ",") {
			return nil, fmt.Errorf("tmpfs %q: want an absolute path", t.Target)
		}
		if t.SizeBytes < 0 {
			return nil, fmt.Errorf("tmpfs %s: negative size", t.Target)
		}
		opts := "rw,nosuid,nodev,noexec"
		if t.Exec {
			opts = "rw,nosuid,nodev,exec"
		}
		if t.SizeBytes > 0 {
			opts += ",size=" + strconv.FormatInt(t.SizeBytes, 10)
		}
		out[t.Target] = opts
	}
	return out, nil
}

// checkUser insists on a numeric, non-root "uid:gid". Names are refused
// because the image decides what they mean, and a bare uid is refused because
// the engine then picks the group (root's, when the uid is not in the
// image's /etc/passwd).
func checkUser(user string) error {
	const fix = `give a numeric non-root "uid:gid" such as "1000:1000"`
	if user == "" {
		return fmt.Errorf("no user given: containers never run as root; %s", fix)
	}
	uid, gid, ok := strings.Cut(user, ":")
	if !ok {
		return fmt.Errorf("user %q has no group: %s", user, fix)
	}
	for _, part := range []struct{ what, v string }{{"uid", uid}, {"gid", gid}} {
		n, err := strconv.ParseUint(part.v, 10, 32)
		if err != nil {
			return fmt.Errorf("user %q: %s %q is not a number: %s", user, part.what, part.v, fix)
		}
		if n == 0 {
			return fmt.Errorf("user %q: %s 0 is root, and containers never run as root: %s", user, part.what, fix)
		}
	}
	return nil
}

func resources(l Limits) (container.Resources, error) {
	if l.MemoryBytes < 0 || l.CPUs < 0 || l.Pids < 0 {
		return container.Resources{}, fmt.Errorf("negative resource limit %+v: use 0 for the engine's default", l)
	}
	r := container.Resources{
		Ulimits: []*container.Ulimit{{Name: "nofile", Soft: nofileLimit, Hard: nofileLimit}},
	}
	if l.MemoryBytes > 0 {
		r.Memory = l.MemoryBytes
		r.MemorySwap = l.MemoryBytes // equal: no swap on top of the limit
	}
	if l.CPUs > 0 {
		r.NanoCPUs = int64(l.CPUs * 1e9)
	}
	if l.Pids > 0 {
		pids := l.Pids
		r.PidsLimit = &pids
	}
	return r, nil
}

func (d *Docker) bindMounts(ms []Mount) ([]mount.Mount, error) {
	out := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return nil, fmt.Errorf("mount %s -> %s: both paths must be absolute", m.Source, m.Target)
		}
		if err := d.checkNotEngineSocket(m.Source); err != nil {
			return nil, err
		}
		out = append(out, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	return out, nil
}

// checkNotEngineSocket refuses a mount source that is, contains or lies in
// a container engine's socket or socket directory: with the socket the
// agent could start a privileged container and own the host.
func (d *Docker) checkNotEngineSocket(source string) error {
	return CheckNotEngineSocket(source, d.engineSockets)
}

// CheckUser is the user rule every backend applies: a numeric, non-root
// "uid:gid".
func CheckUser(user string) error { return checkUser(user) }

// CheckNotEngineSocket is the mount rule every backend applies: source is
// not, does not contain and does not lie in any of the engine sockets (or
// socket directories) given (EngineSockets lists the usual ones).
func CheckNotEngineSocket(source string, engineSockets []string) error {
	refuse := func(what string) error {
		return fmt.Errorf("mount source %s %s; airlock never gives a sandbox access to the container engine (remove that mount)", source, what)
	}
	src := resolvePath(source)
	for _, base := range []string{filepath.Base(source), filepath.Base(src)} {
		// podman-<runtime>.sock: a Podman service for another runtime.
		if slices.Contains([]string{"docker.sock", "podman.sock", "containerd.sock"}, base) ||
			strings.HasPrefix(base, "podman-") && strings.HasSuffix(base, ".sock") {
			return refuse("is a container engine socket")
		}
	}
	srcInfo, srcErr := os.Stat(src)
	for _, p := range engineSockets {
		sock := resolvePath(p)
		sockInfo, err := os.Stat(sock)
		if err != nil {
			continue // not on this host
		}
		switch {
		case within(src, sock):
			return refuse("is or contains the container engine socket " + p)
		case within(sock, src):
			return refuse("lies in the container engine directory " + p)
		case srcErr == nil && os.SameFile(srcInfo, sockInfo):
			return refuse("is a link to the container engine socket " + p)
		}
	}
	return nil
}

// resolvePath follows symlinks (/var/run -> /run) when the path exists.
func resolvePath(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}

// within reports whether path is dir or lies below it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
