package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// A build instance reaches apt and npm through its NIC on the configured
// bridge (NAT). Incus leaves the address to a DHCP client in the guest,
// which airlock's bases do not have, so the builder picks a free address,
// pins it on the NIC (Incus then refuses it to any other instance, and its
// dnsmasq never leases it) and configures it from inside with the airlock
// binary's netlink helper (ConfigureIncusNIC). Names resolve through the
// bridge's dnsmasq, which forwards to the host's resolvers.

// buildNet is the bridge's subnet and gateway.
type buildNet struct {
	gateway netip.Addr
	prefix  netip.Prefix
}

// bridgeNet reads the managed bridge's IPv4 address (a.b.c.1/24).
func (i *Incus) bridgeNet(ctx context.Context, network string) (buildNet, error) {
	var n struct {
		Managed bool              `json:"managed"`
		Config  map[string]string `json:"config"`
	}
	if err := i.c.get(ctx, "/1.0/networks/"+url.PathEscape(network), &n); err != nil {
		if errors.Is(err, ErrNotFound) {
			return buildNet{}, fmt.Errorf("network %s: not found; create it (scripts/setup.sh does) or set [engine.incus] network: %w", network, err)
		}
		return buildNet{}, fmt.Errorf("network %s: %w", network, err)
	}
	p, err := netip.ParsePrefix(n.Config["ipv4.address"])
	if !n.Managed || err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return buildNet{}, fmt.Errorf("network %s: want a managed bridge with an IPv4 subnet (ipv4.address a.b.c.1/24), it has %q", network, n.Config["ipv4.address"])
	}
	return buildNet{gateway: p.Addr(), prefix: p.Masked()}, nil
}

// freeAddress picks a random host address of the subnet that no lease of
// the network (dynamic or pinned) holds.
func (i *Incus) freeAddress(ctx context.Context, network string, bn buildNet) (netip.Addr, error) {
	var leases []struct {
		Address string `json:"address"`
	}
	if err := i.c.get(ctx, "/1.0/networks/"+url.PathEscape(network)+"/leases", &leases); err != nil {
		return netip.Addr{}, fmt.Errorf("network %s: leases: %w", network, err)
	}
	used := map[netip.Addr]bool{bn.gateway: true}
	for _, l := range leases {
		if a, err := netip.ParseAddr(l.Address); err == nil {
			used[a] = true
		}
	}
	base := bn.prefix.Addr().As4()
	first := binary.BigEndian.Uint32(base[:])
	hosts := uint32(1)<<(32-bn.prefix.Bits()) - 2 // less the network and broadcast addresses
	var r [4]byte
	for range 64 {
		if _, err := rand.Read(r[:]); err != nil {
			return netip.Addr{}, err
		}
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], first+1+binary.BigEndian.Uint32(r[:])%hosts)
		if addr := netip.AddrFrom4(a); !used[addr] {
			return addr, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("network %s: no free address in %s", network, bn.prefix)
}

// configureNet gives the running build instance its address, route and
// resolver, and returns what restores the instance's /etc/resolv.conf.
func (b *incusBuild) configureNet(ctx context.Context) (restore func(context.Context) error, err error) {
	bin, err := os.Open(b.bin)
	if err != nil {
		return nil, fmt.Errorf("configure the build instance's network: %w", err)
	}
	defer bin.Close()
	fi, err := bin.Stat()
	if err != nil {
		return nil, fmt.Errorf("configure the build instance's network: %w", err)
	}
	// Pushed, run and removed: a mount would leave its mount point in the
	// image.
	const tool = "/tmp/.airlock-build-net"
	if err := b.i.pushFile(ctx, b.name, tool, "file", 0, 0, 0o700, bin, fi.Size()); err != nil {
		return nil, fmt.Errorf("configure the build instance's network: copy airlock in: %w", err)
	}
	var out bytes.Buffer
	code, err := b.i.execStream(ctx, b.name, incusExec{
		Argv: []string{tool, IncusInitCommand, "net", "eth0", netip.PrefixFrom(b.addr, b.net.prefix.Bits()).String(), b.net.gateway.String()},
		Env:  map[string]string{"PATH": defaultPath},
	}, &out, &out)
	b.i.deleteFile(ctx, b.name, tool)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d: %s", code, out.String())
	}
	if err != nil {
		return nil, fmt.Errorf("configure the build instance's network (%s on %s): %w", b.addr, b.net.prefix, err)
	}

	// The resolver for the build only: the image keeps its own file.
	const resolv = "/etc/resolv.conf"
	kind, err := b.i.statFile(ctx, b.name, resolv)
	if err != nil {
		return nil, err
	}
	var old []byte
	if kind == "file" || kind == "symlink" {
		if old, err = b.i.readRaw(ctx, b.name, resolv, 1<<20); err != nil {
			return nil, fmt.Errorf("read %s: %w", resolv, err)
		}
	}
	if kind == "symlink" {
		b.i.deleteFile(ctx, b.name, resolv)
	}
	conf := "# airlock image build: the bridge's resolver\nnameserver " + b.net.gateway.String() + "\n"
	if err := b.i.pushFile(ctx, b.name, resolv, "file", 0, 0, 0o644, strings.NewReader(conf), int64(len(conf))); err != nil {
		return nil, fmt.Errorf("write %s: %w", resolv, err)
	}
	return func(ctx context.Context) error {
		var err error
		switch kind {
		case "":
			err = b.i.deleteFile(ctx, b.name, resolv)
		case "file":
			err = b.i.pushFile(ctx, b.name, resolv, "file", 0, 0, 0o644, strings.NewReader(string(old)), int64(len(old)))
		case "symlink":
			if err = b.i.deleteFile(ctx, b.name, resolv); err == nil {
				err = b.i.pushFile(ctx, b.name, resolv, "symlink", 0, 0, 0o777, strings.NewReader(string(old)), int64(len(old)))
			}
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", resolv, err)
		}
		return nil
	}, nil
}

// deleteFile removes a file of the instance; a missing one is no error.
func (i *Incus) deleteFile(ctx context.Context, name, path string) error {
	err := i.c.sync(ctx, http.MethodDelete, "/1.0/instances/"+url.PathEscape(name)+"/files?path="+url.QueryEscape(path), nil, nil)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// readRaw reads what the file API returns for path: a file's content, a
// symlink's target.
func (i *Incus) readRaw(ctx context.Context, name, path string, max int64) ([]byte, error) {
	resp, err := i.c.raw(ctx, http.MethodGet, "/1.0/instances/"+url.PathEscape(name)+"/files?path="+url.QueryEscape(path), nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return data, nil
}
