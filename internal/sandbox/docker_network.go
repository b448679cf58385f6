package sandbox

import (
	"context"
	"fmt"

	"github.com/moby/moby/client"
)

// GatewayIP is the host's address on an engine network: where a container on
// that network reaches services the host runs (the demo's model server).
func (d *Docker) GatewayIP(ctx context.Context, network string) (string, error) {
	res, err := d.cli.NetworkInspect(ctx, network, client.NetworkInspectOptions{})
	if err != nil {
		return "", fmt.Errorf("inspect network %s: %w", network, err)
	}
	for _, c := range res.Network.IPAM.Config {
		if c.Gateway.IsValid() && c.Gateway.Is4() {
			return c.Gateway.String(), nil
		}
	}
	return "", fmt.Errorf("network %s has no IPv4 gateway", network)
}
