package sandbox

import (
	"context"
	"fmt"
	"net"

	"github.com/moby/moby/client"
)

// GatewayIP is the host's address on an engine network: where a container on
// that network reaches services the host runs (the demo's model server).
// Docker 20.10 does not report the default bridge's gateway, so the bridge
// interface's own address is the fallback.
func (d *Docker) GatewayIP(ctx context.Context, network string) (string, error) {
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
