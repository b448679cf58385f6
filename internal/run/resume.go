package run

import (
	"errors"

	"github.com/airlock-dev/airlock/internal/store"
)

// restoreSession copies an earlier run's agent state into a new run's home.
// TODO(resume): restore the conversation.
func (m *Manager) restoreSession(from, to *store.Run, uid, gid int) error {
	return errors.New("resume is not implemented yet")
}
