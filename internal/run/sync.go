package run

import (
	"context"
	"errors"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// mountSyncer is an engine whose mounts are copies rather than the host's
// directories (Kubernetes: nothing on the user's disk is mounted into the
// cluster). What the sandbox writes reaches the run's directory only when
// synced; the engine extracts it as hostile input (sandbox.MountSyncer).
type mountSyncer interface {
	SyncMounts(ctx context.Context, id string, targets []string) error
}

// liveSyncEvery is how often a supervisor brings a copied sandbox's
// transcript and meter home while it runs: each sync is an exec through
// the cluster's API, and the proxy enforces the budget on its own meanwhile.
const liveSyncEvery = 2 * time.Second

// syncLive brings home what the host reads while a run goes on: the
// proxy's meter and audit log, and the agent's transcript and stderr.
// Errors leave the last copy in place: the next sync tries again.
func (m *Manager) syncLive(ctx context.Context, r *store.Run) {
	s, ok := m.Engine.(mountSyncer)
	if !ok {
		return
	}
	_ = s.SyncMounts(ctx, ProxyContainerName(r.ID), []string{sandbox.ProxyConfigDir})
	if r.Container != "" {
		_ = s.SyncMounts(ctx, r.Container, []string{containerLogDir})
	}
}

// syncAll brings home everything the sandbox wrote (its workspace, home
// and logs, and the proxy's records) before a run's outcome is decided and
// its proxy removed.
func (m *Manager) syncAll(ctx context.Context, r *store.Run) {
	s, ok := m.Engine.(mountSyncer)
	if !ok {
		return
	}
	if err := s.SyncMounts(ctx, ProxyContainerName(r.ID), nil); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
		m.progress("warning: run %s: %v", r.ID, err)
	}
	if r.Container != "" {
		if err := s.SyncMounts(ctx, r.Container, nil); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			m.progress("warning: run %s: %v", r.ID, err)
		}
	}
}
