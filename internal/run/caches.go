package run

import (
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// cacheMounts are the shared dependency caches a run mounts.
// TODO(caches): mount the opt-in caches.
func (m *Manager) cacheMounts(r *store.Run, caches []string, uid, gid int) ([]sandbox.Mount, error) {
	return nil, nil
}
