package run

import (
	"context"
	"fmt"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Push pushes a finished run's branch from the user's repository to one of
// its remotes (workspace.Push): host git on the user's repository, never
// the agent's copy, and no hook runs.
func (m *Manager) Push(ctx context.Context, r *store.Run, opts workspace.PushOptions) (workspace.PushResult, *store.Run, error) {
	r, err := m.Pushable(ctx, r, "push")
	if err != nil {
		return workspace.PushResult{}, nil, err
	}
	res, err := workspace.Push(ctx, r.Project, r.ID, opts)
	return res, r, err
}

// Pushable reconciles a run and checks that it has a branch to push: it
// is finished, its work was brought back, and it did not work on the
// project directory itself. verb names the action in the error.
func (m *Manager) Pushable(ctx context.Context, r *store.Run, verb string) (*store.Run, error) {
	r, err := m.ready(ctx, r, verb)
	if err != nil {
		return nil, err
	}
	if r.Here {
		return nil, fmt.Errorf("cannot %s run %s: it worked on your project directory (--here), so it has no branch of its own; push your branch with git push", verb, r.ID)
	}
	return r, nil
}
