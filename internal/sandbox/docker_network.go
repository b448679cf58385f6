package sandbox

import (
	"context"
	"fmt"
	"net"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/moby/moby/client"
)

// GatewayIP is the host's address on an engine network: where a container on
// that network reaches services the host runs (the demo's model server).
// Docker 20.10 does not report the default bridge's gateway, so the bridge
// interface's own address is the fallback.
func (d *Docker) GatewayIP(ctx context.Context, network string) (string, error) {
	if d.podman != nil {
		return podmanHostAddr()
	}
	res, err := d.cli.NetworkInspect(ctx, network, client.NetworkInspectOptions{})
	if err != nil {
		return "", d.engineError("inspect network "+network, err)
	}
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.IsValid() && c.Gateway.Is4() {
			return c.Gateway.String(), nil
		}
	}
	bridge := res.Network.Options["com.docker.network.bridge.name"]
	if bridge == "" && network == "bridge" {
		bridge = "docker0"
	}
	if iface, err := net.InterfaceByName(bridge); err == nil {
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String(), nil
			}
		}
	}
	return "", fmt.Errorf("network %s: cannot find the host's address on it", network)
}

// ensureNetwork creates a bridge network (with outbound NAT, like Docker's
// default bridge) unless one of that name exists. Two airlock processes may
// race to create it; the loser finds it made.
func (d *Docker) ensureNetwork(ctx context.Context, name string, labels map[string]string) error {
	if _, err := d.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return d.engineError("inspect network "+name, err)
	}
	_, err := d.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: labels})
	if err != nil && !cerrdefs.IsConflict(err) {
		if _, ierr := d.cli.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); ierr == nil {
			return nil
		}
		return d.engineError("create network "+name, err)
	}
	return nil
}

// ContainerIP is a container's address on a network.
func (d *Docker) ContainerIP(ctx context.Context, id, network string) (string, error) {
	res, err := d.containerInspect(ctx, id)
	if err != nil {
		return "", d.engineError("inspect container "+id, err)
	}
	if res.Container.NetworkSettings != nil {
		if ep, ok := res.Container.NetworkSettings.Networks[network]; ok && ep != nil && ep.IPAddress.IsValid() {
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("container %s has no address on network %s", id, network)
}
