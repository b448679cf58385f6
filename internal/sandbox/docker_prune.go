package sandbox

import (
	"context"
	"errors"

	"github.com/moby/moby/client"
)

// PruneNetworks removes the networks carrying all the given labels that no
// container uses, and returns their names. The engine checks "unused"
// itself, so a network a container joined meanwhile is left alone; a
// network without the labels (a user's own) is never touched.
func (d *Docker) PruneNetworks(ctx context.Context, labels map[string]string) ([]string, error) {
	if len(labels) == 0 {
		return nil, errors.New("prune networks: no labels given; refusing to prune every unused network")
	}
	filters := client.Filters{}
	for k, v := range labels {
		filters.Add("label", k+"="+v)
	}
	res, err := d.cli.NetworkPrune(ctx, client.NetworkPruneOptions{Filters: filters})
	if err != nil {
		return nil, d.engineError("prune networks", err)
	}
	return res.Report.NetworksDeleted, nil
}
