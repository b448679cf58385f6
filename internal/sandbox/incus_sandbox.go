package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// On Incus a sandbox is two instances. The proxy is an instance of a tiny
// image the backend makes itself (IncusProxyImage: the static airlock binary,
// mounted in, is all it needs, so there is nothing else in it to attack or to
// unpack) with one NIC on the managed bridge, at an address the backend
// picks, LXC configures and the bridge NATs. The agent's instance has no NIC
// at all. Both mount the sandbox's socket directory (disk devices with
// shift=true, so the sockets the proxy makes as the agent's user are the
// agent's); a relay in front of the agent's command turns them into loopback
// ports, as on Docker.

// IncusProxyImage is the alias of the proxy's image.
const IncusProxyImage = "airlock-proxy:1"

// CreateSandbox starts the proxy, waits until it answers, then creates and
// starts the agent's instance. (Not both at once: incusd answered a request
// about one instance 30 s late while it created another.)
func (i *Incus) CreateSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	proxy, err := i.startProxy(ctx, spec)
	if err != nil {
		return Sandbox{}, err
	}
	agent := spec.Agent
	agent.Mounts = append(append([]Mount(nil), agent.Mounts...),
		Mount{Source: filepath.Join(spec.Dir, "sock"), Target: socketDir})
	agent.Cmd = RelayCommand(agent.Cmd, spec.RelayFlags)
	undo := func() {
		ctx := context.WithoutCancel(ctx)
		i.Remove(ctx, agent.Name)
		i.RemoveProxy(ctx, spec.Proxy.Name)
	}
	id, err := i.create(ctx, agent, incusExtra{binary: spec.Binary})
	if err == nil {
		err = spec.agentReady(ctx)
	}
	if err != nil {
		undo()
		return Sandbox{}, err
	}
	if err := i.Start(ctx, id); err != nil {
		undo()
		return Sandbox{}, err
	}
	return Sandbox{Agent: id, Proxy: proxy}, nil
}

// RestartSandbox starts a new proxy, then the existing agent instance.
func (i *Incus) RestartSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	proxy, err := i.startProxy(ctx, spec)
	if err != nil {
		return Sandbox{}, err
	}
	if err := i.Start(ctx, spec.Agent.Name); err != nil {
		i.RemoveProxy(context.WithoutCancel(ctx), spec.Proxy.Name)
		return Sandbox{}, err
	}
	return Sandbox{Agent: spec.Agent.Name, Proxy: proxy}, nil
}

// RemoveProxy stops and removes a sandbox's proxy instance; a missing one
// is not an error. The proxy is killed through its init, which ends at
// once (so its meter and audit log are final when this returns); Incus'
// teardown of the instance and its deletion then go on in the background
// (Remove), off the run's critical path.
func (i *Incus) RemoveProxy(ctx context.Context, name string) error {
	i.gone.await(ctx, name)
	var inst incusInstance
	if err := i.c.get(ctx, instancePath(name), &inst); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("remove the egress proxy %s: %w", name, err)
	}
	if inst.Status == "Running" && i.incusStatus(ctx, inst) == "Running" {
		if _, err := i.execRoot(ctx, name, []string{BinaryPath, IncusInitCommand, "kill"}); err == nil {
			i.waitEnded(ctx, name, 5*time.Second)
		}
	}
	return i.Remove(ctx, name)
}

// waitEnded polls, for up to d, until the instance's init has left its
// exit record or the instance is stopped.
func (i *Incus) waitEnded(ctx context.Context, id string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var inst incusInstance
		if err := i.c.get(ctx, instancePath(id), &inst); err != nil || inst.Status != "Running" || i.incusStatus(ctx, inst) != "Running" {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startProxy starts a sandbox's proxy and waits until it answers. A proxy
// left by an earlier leg of the sandbox is replaced.
func (i *Incus) startProxy(ctx context.Context, spec SandboxSpec) (string, error) {
	p := spec.Proxy
	if len(p.Mounts) > 0 {
		// The proxy's uid is shifted into the instance's range, and
		// ssh-agent refuses a peer of another uid.
		return "", errors.New("forwarding your ssh-agent is not supported on Incus; load the key with [egress.ssh] key_file instead")
	}
	network := p.Network
	if network == "" {
		network = i.opts.Network
	}
	if err := i.ensureProxyImage(ctx); err != nil {
		return "", err
	}
	sockDir := filepath.Join(spec.Dir, "sock")
	if err := os.MkdirAll(sockDir, 0o700); err != nil {
		return "", fmt.Errorf("create the proxy's socket directory: %w", err)
	}
	if uid, gid, ok := numericUser(p.User); ok {
		if err := os.Lchown(sockDir, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("create the proxy's socket directory: %w", err)
		}
	}
	for _, s := range []string{ProxySocket, APISocket, SSHAgentSocket} {
		os.Remove(filepath.Join(sockDir, filepath.Base(s)))
	}
	if err := i.Remove(ctx, p.Name); err != nil {
		return "", err
	}
	// The address is picked and the instance created under a machine-wide
	// lock, so that airlock's own proxies and builds never pick one address
	// twice: Incus refuses every instance of a duplicate at start, not just
	// the second. Another client of Incus can still take the address in
	// between; then another is picked.
	var id string
	for attempt := 0; ; attempt++ {
		var nic *incusNIC
		err := withMachineLock(ctx, incusAddressLock(), func() (err error) {
			if nic, err = i.proxyNIC(ctx, network, p.Name); err != nil {
				return err
			}
			id, err = i.create(ctx, Spec{
				Name:  p.Name,
				Image: IncusProxyImage,
				Cmd:   ProxyCommand(),
				Env:   p.Env,
				User:  p.User,
				Mounts: []Mount{
					{Source: sockDir, Target: socketDir},
					{Source: p.ConfigDir, Target: ProxyConfigDir},
				},
				Tmpfs:      []Tmpfs{{Target: "/tmp", SizeBytes: 64 << 20}},
				Labels:     p.Labels,
				ExtraHosts: p.ExtraHosts,
				Limits:     p.Limits,
			}, incusExtra{binary: spec.Binary, nic: nic})
			return err
		})
		if err != nil {
			if nic != nil && attempt < 4 && addressTaken(err, nic) {
				i.RemoveProxy(context.WithoutCancel(ctx), p.Name)
				continue
			}
			return "", fmt.Errorf("create the egress proxy %s: %w", p.Name, err)
		}
		if err = i.Start(ctx, id); err != nil {
			i.RemoveProxy(context.WithoutCancel(ctx), p.Name)
			if attempt < 4 && addressTaken(err, nic) {
				continue
			}
			return "", fmt.Errorf("start the egress proxy: %w", err)
		}
		break
	}
	if err := waitProxy(ctx, i, id, filepath.Join(sockDir, filepath.Base(APISocket))); err != nil {
		i.RemoveProxy(context.WithoutCancel(ctx), p.Name)
		return "", fmt.Errorf("egress proxy %s: %w", p.Name, err)
	}
	return id, nil
}

// incusNetwork is the part of a managed network airlock reads.
type incusNetwork struct {
	Config  map[string]string `json:"config"`
	Managed bool              `json:"managed"`
	Type    string            `json:"type"`
}

// bridgePrefix is the managed bridge's IPv4 address and subnet.
func (i *Incus) bridgePrefix(ctx context.Context, network string) (netip.Prefix, error) {
	var n incusNetwork
	if err := i.c.get(ctx, "/1.0/networks/"+url.PathEscape(network), &n); err != nil {
		if errors.Is(err, ErrNotFound) {
			return netip.Prefix{}, fmt.Errorf("network %s not found: create it (incus network create %s ipv4.address=10.247.0.1/24 ipv4.nat=true ipv6.address=none) or name another in [engine.incus] network: %w", network, network, err)
		}
		return netip.Prefix{}, err
	}
	pfx, err := netip.ParsePrefix(n.Config["ipv4.address"])
	if !n.Managed || n.Type != "bridge" || err != nil || !pfx.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("network %s is not a managed bridge with an explicit ipv4.address (have %q): set one with `incus network set %s ipv4.address=10.247.0.1/24`",
			network, n.Config["ipv4.address"], network)
	}
	return pfx, nil
}

// proxyNIC picks a free address on the bridge for the proxy: not the
// gateway's and not one the network has leased or reserved, starting at a
// place given by the name so that proxies made at once rarely collide.
func (i *Incus) proxyNIC(ctx context.Context, network, name string) (*incusNIC, error) {
	pfx, err := i.bridgePrefix(ctx, network)
	if err != nil {
		return nil, err
	}
	var leases []struct {
		Address string `json:"address"`
	}
	if err := i.c.get(ctx, "/1.0/networks/"+url.PathEscape(network)+"/leases", &leases); err != nil {
		return nil, fmt.Errorf("read the leases of network %s: %w", network, err)
	}
	used := map[netip.Addr]bool{pfx.Addr(): true}
	for _, l := range leases {
		if a, err := netip.ParseAddr(l.Address); err == nil {
			used[a] = true
		}
	}
	// Reserved by instances' NIC devices, leased or not.
	var insts []struct {
		Devices         map[string]map[string]string `json:"devices"`
		ExpandedDevices map[string]map[string]string `json:"expanded_devices"`
	}
	if err := i.c.get(ctx, "/1.0/instances?recursion=1", &insts); err != nil {
		return nil, err
	}
	for _, in := range insts {
		for _, d := range in.ExpandedDevices {
			if a, err := netip.ParseAddr(d["ipv4.address"]); err == nil {
				used[a] = true
			}
		}
	}
	hostBits := 32 - pfx.Bits()
	if hostBits < 2 {
		return nil, fmt.Errorf("network %s: subnet %s has no room for the proxy", network, pfx)
	}
	size := uint32(1)<<min(hostBits, 16) - 2 // without the network and broadcast addresses
	h := fnv.New32a()
	h.Write([]byte(name))
	start := h.Sum32() % size
	base := pfx.Masked().Addr().As4()
	baseN := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for k := uint32(0); k < size; k++ {
		n := baseN + 1 + (start+k)%size
		a := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		if !used[a] && pfx.Contains(a) {
			return &incusNIC{network: network, addr: netip.PrefixFrom(a, pfx.Bits()).String(), gateway: pfx.Addr().String()}, nil
		}
	}
	return nil, fmt.Errorf("network %s: no free address left in %s for the proxy", network, pfx)
}

// incusAddressLock is machine-wide, as the Incus daemon is.
func incusAddressLock() string { return filepath.Join(os.TempDir(), "airlock-incus-address.lock") }

// addressTaken reports whether Incus refused an instance because another
// holds the address picked for its NIC.
func addressTaken(err error, nic *incusNIC) bool {
	ip, _, _ := strings.Cut(nic.addr, "/")
	return strings.Contains(err.Error(), `"`+ip+`"`) && strings.Contains(err.Error(), "already defined")
}

// HostAddress is the host's address on the proxies' bridge.
func (i *Incus) HostAddress(ctx context.Context) (string, error) {
	pfx, err := i.bridgePrefix(ctx, i.opts.Network)
	if err != nil {
		return "", err
	}
	return pfx.Addr().String(), nil
}

// ensureProxyImage imports the proxy's image once: the mount points and
// nothing else.
func (i *Incus) ensureProxyImage(ctx context.Context) error {
	if ok, err := i.ImageExists(ctx, IncusProxyImage); err != nil {
		return err
	} else if ok {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"tmp/", 0o1777}, {"proc/", 0o555}, {"sys/", 0o555}, {"dev/", 0o755},
		{"airlock/", 0o755}, {"airlock/bin/", 0o755}, {"airlock/sock/", 0o755}, {"airlock/egress/", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir.name, Mode: dir.mode}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := i.ImportImage(ctx, &buf, IncusProxyImage); err != nil {
		// Another airlock made it meanwhile.
		if ok, _ := i.ImageExists(ctx, IncusProxyImage); ok {
			return nil
		}
		return fmt.Errorf("make the proxy image: %w", err)
	}
	return nil
}
