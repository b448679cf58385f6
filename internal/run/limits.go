package run

import (
	"context"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// warnIgnoredLimits tells the user when the engine will not enforce the
// run's memory, CPU and pids limits: the run goes ahead, but not silently.
func (m *Manager) warnIgnoredLimits(ctx context.Context, limits sandbox.Limits) {
	if pl, ok := m.Engine.(interface{ PidsLimitIgnored() string }); ok && limits.Pids > 0 {
		m.progress("Note: %s; [sandbox] pids is not applied.", pl.PidsLimitIgnored())
	}
	li := m.Caps.Limits
	if li == nil || limits == (sandbox.Limits{}) {
		return
	}
	if why, err := li.LimitsIgnored(ctx); err == nil && why != "" {
		m.progress("Warning: %s; this run has no memory, CPU or pids limits.", why)
	}
}
