package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// nofileLimit is set explicitly because Podman's default exceeds the hard
// limit of some hosts (and then fails to start anything); Docker accepts it.
const nofileLimit = 20000

// createOptions turns spec into the engine's create request, with the
// hardening every sandbox gets. Every field used here exists in API 1.25+,
// so Docker 20.10 (API 1.41) honours all of them.
func (d *Docker) createOptions(spec Spec) (client.ContainerCreateOptions, error) {
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
	netName := spec.Network
	if netName == "" {
		netName = "none" // a sandbox gets a network only when asked for one
	}
	useInit := true
	var netcfg *network.NetworkingConfig
	if len(spec.Aliases) > 0 {
		netcfg = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			netName: {Aliases: spec.Aliases},
		}}
	}
	return client.ContainerCreateOptions{
		NetworkingConfig: netcfg,
		Name:             spec.Name,
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
			ExtraHosts:     spec.ExtraHosts,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges"},
			Init:           &useInit,
			Privileged:     false,
			ReadonlyRootfs: false,
			AutoRemove:     false,
			Tmpfs:          spec.Tmpfs,
			Mounts:         mounts,
			Resources:      res,
			Runtime:        spec.Runtime,
		},
	}, nil
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
	refuse := func(what string) error {
		return fmt.Errorf("mount source %s %s; airlock never gives a sandbox access to the container engine (remove that mount)", source, what)
	}
	src := resolvePath(source)
	for _, name := range []string{"docker.sock", "podman.sock", "containerd.sock"} {
		if filepath.Base(source) == name || filepath.Base(src) == name {
			return refuse("is a container engine socket")
		}
	}
	srcInfo, srcErr := os.Stat(src)
	for _, p := range d.engineSockets {
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
