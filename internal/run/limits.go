package run

import (
	"context"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// limitsIgnorer is an engine that may drop resource limits (rootless
// Podman on cgroup v1) and says why.
type limitsIgnorer interface {
	LimitsIgnored(ctx context.Context) (string, error)
}

// warnIgnoredLimits tells the user when the engine will not enforce the
// run's memory, CPU and pids limits: the run goes ahead, but not silently.
func (m *Manager) warnIgnoredLimits(ctx context.Context, limits sandbox.Limits) {
	li, ok := m.Engine.(limitsIgnorer)
	if !ok || limits == (sandbox.Limits{}) {
		return
	}
	if why, err := li.LimitsIgnored(ctx); err == nil && why != "" {
		m.progress("Warning: %s; this run has no memory, CPU or pids limits.", why)
	}
}
