package run

import (
	"context"
	"errors"
	"fmt"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// LabelStore names the run registry (its directory) that made an engine
// object: several registries (users, test suites) may share one engine, and
// clean must only ever remove its own.
const LabelStore = "airlock.store"

// labels are the labels of every engine object of a run.
func (m *Manager) labels(r *store.Run, role string) map[string]string {
	l := labels(r, role)
	l[LabelStore] = m.Store.Dir()
	return l
}

// Cleaned is what Clean did.
type Cleaned struct {
	// Failed are runs found interrupted and recorded as failed.
	Failed []*store.Run
	// Containers are the containers removed, by name.
	Containers []string
	// Networks are the egress networks removed.
	Networks []string
	// Remnants are what remained of containers removed behind airlock's
	// back, and was removed now (Kubernetes: "secret NS/NAME").
	Remnants []string
	// Warm are the pods of the engine's warm pool, removed.
	Warm []string
}

// Clean brings every run's record up to date (recording interrupted runs as
// failed and collecting finished ones), then removes what no run needs any
// more: the stopped agent containers of finished runs that are not
// persistent, leftover harvest containers, proxies of finished or unknown
// runs, containers of removed or unknown runs, and airlock's egress networks
// that no container uses; and what remains of containers someone else
// removed (on Kubernetes, a sandbox's Secret and NetworkPolicies), by the
// same rules as the container itself. It never touches a run's copy or branch, a
// running container, a persistent run's container or a network airlock did
// not label as its own.
func (m *Manager) Clean(ctx context.Context) (Cleaned, error) {
	var out Cleaned
	if err := m.Engine.Ping(ctx); err != nil {
		return out, err
	}
	runs, err := m.Store.List()
	if err != nil {
		return out, err
	}
	var errs []error
	for _, r := range runs {
		if r.Removed() || (r.Status.Finished() && r.Harvested) {
			continue
		}
		before := r.Status
		cur, err := m.Collect(ctx, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", r.ID, err))
			continue
		}
		if cur.Status != before && cur.Status == store.StatusFailed {
			out.Failed = append(out.Failed, cur)
		}
	}
	all, err := m.Engine.List(ctx, map[string]string{})
	if err != nil {
		return out, errors.Join(append(errs, err)...)
	}
	for _, c := range all {
		if !m.leftover(c) {
			continue
		}
		if err := m.Engine.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		out.Containers = append(out.Containers, c.Name)
	}
	// The same rules for what remains of a container that is gone: the
	// backend reports it with the container's labels.
	if rr := m.Caps.Remnants; rr != nil {
		rems, err := rr.Remnants(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		for _, r := range rems {
			if !m.leftover(r.State) {
				continue
			}
			if err := rr.RemoveRemnant(ctx, r); err != nil {
				errs = append(errs, err)
				continue
			}
			out.Remnants = append(out.Remnants, r.Objects...)
		}
	}
	// The warm pool is made again by the next run.
	if w := m.Caps.Warm; w != nil {
		pods, err := w.Drain(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		out.Warm = pods
	}
	// An engine without networks of its own has none to prune.
	if p := m.Caps.Prune; p != nil {
		nets, err := p.PruneNetworks(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		out.Networks = nets
	}
	return out, errors.Join(errs...)
}

// leftover reports whether a container is airlock's and no run needs it.
func (m *Manager) leftover(c sandbox.State) bool {
	id, ok := c.Labels[LabelRun]
	if !ok {
		return false
	}
	reg, labelled := c.Labels[LabelStore]
	if labelled && reg != m.Store.Dir() {
		return false // another registry's
	}
	r, err := m.Store.Get(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Unknown here: an orphan of ours, or (without the label, from
		// an older airlock) perhaps another registry's run.
		return labelled
	case err != nil:
		return false
	case r.Removed():
		return true
	case !r.Status.Finished():
		// Creating or running: everything it has is in use.
		return false
	}
	switch c.Labels[LabelRole] {
	case "proxy":
		return true
	case "harvest":
		// A harvest in progress holds the run's work lock and its
		// container runs; only an exited one is left over.
		return !c.Status.Busy()
	case "agent":
		return !r.Persistent && !c.Status.Busy()
	}
	return false
}
