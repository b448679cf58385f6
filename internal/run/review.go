package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// ErrStillRunning is returned (wrapped) by operations that need a finished run.
var ErrStillRunning = errors.New("the run is still running")

// ErrUnmerged is returned (wrapped) when removing would drop unmerged work.
var ErrUnmerged = errors.New("the run has work that is not merged anywhere")

// ready reconciles a run and checks that its work is available for review.
func (m *Manager) ready(ctx context.Context, r *store.Run, verb string) (*store.Run, error) {
	r, err := m.Collect(ctx, r)
	if err != nil {
		return nil, err
	}
	switch {
	case r.Removed():
		return nil, fmt.Errorf("cannot %s run %s: it was removed", verb, r.ID)
	case !r.Status.Finished():
		return nil, fmt.Errorf("cannot %s run %s: %w (wait for it with `airlock wait %s`, or `airlock stop %s`)", verb, r.ID, ErrStillRunning, r.ID, r.ID)
	case r.HarvestError != "":
		return nil, fmt.Errorf("cannot %s run %s: its work could not be brought back: %s", verb, r.ID, r.HarvestError)
	}
	return r, nil
}

// Diff writes what the run changed relative to its base commit, including
// changes the agent left uncommitted.
func (m *Manager) Diff(ctx context.Context, r *store.Run, opts workspace.DiffOptions, w io.Writer) error {
	r, err := m.ready(ctx, r, "diff")
	if err != nil {
		return err
	}
	return workspace.Diff(ctx, r.Project, r.BaseCommit, r.ID, opts, w)
}

// Merge brings the run's branch into the user's current branch.
func (m *Manager) Merge(ctx context.Context, r *store.Run, opts workspace.MergeOptions) (workspace.MergeResult, *store.Run, error) {
	r, err := m.ready(ctx, r, "merge")
	if err != nil {
		return workspace.MergeResult{}, nil, err
	}
	res, err := workspace.Merge(ctx, r.Project, r.ID, opts)
	if err != nil {
		return res, r, err
	}
	r, err = m.Store.Update(r.ID, func(r *store.Run) error {
		r.Status = store.StatusMerged
		r.MergedAt = m.now()
		return nil
	})
	return res, r, err
}

// Remove removes a run's container, repository copy and branch, keeping its
// record and logs. It refuses to drop work that is not merged anywhere, or a
// running agent, unless force is set.
func (m *Manager) Remove(ctx context.Context, r *store.Run, force bool) (*store.Run, error) {
	if r.Removed() {
		return r, nil
	}
	// With --force a run whose work cannot be collected (engine gone, image
	// removed) is still removable.
	if cur, err := m.Collect(ctx, r); err == nil {
		r = cur
	} else if !force {
		return nil, err
	}
	if !force {
		if !r.Status.Finished() && r.Status != store.StatusCreating {
			return nil, fmt.Errorf("run %s: %w; stop it first (`airlock stop %s`) or use --force", r.ID, ErrStillRunning, r.ID)
		}
		if r.HarvestError != "" && copyHasGit(m.Store.RunDir(r.ID)) {
			return nil, fmt.Errorf("run %s: %w: its copy could not be harvested (%s); use --force to discard it", r.ID, ErrUnmerged, r.HarvestError)
		}
		commits, err := workspace.Unmerged(ctx, r.Project, r.ID)
		if err != nil {
			return nil, err
		}
		if len(commits) > 0 {
			return nil, fmt.Errorf("run %s: %w: %s\nmerge it (`airlock merge %s`) or use --force to discard it",
				r.ID, ErrUnmerged, strings.Join(commits, ", "), r.ID)
		}
	}
	// A harvest under way (a detached run's watcher's, or another
	// command's) holds the run's work lock and has a container of its own:
	// removing waits for it, and a harvest that comes later finds the run
	// removed and makes nothing, so nothing of the run outlives this.
	var out *store.Run
	err := m.Store.Lock(r.ID, func() error {
		cur, err := m.Store.Get(r.ID)
		if err != nil {
			return err
		}
		if cur.Removed() {
			out = cur
			return nil
		}
		out, err = m.removeLocked(ctx, cur)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// removeLocked is Remove's work, under the run's work lock.
func (m *Manager) removeLocked(ctx context.Context, r *store.Run) (*store.Run, error) {
	var errs []error
	for _, name := range []string{r.Container, r.Container + "-harvest"} {
		if err := m.Engine.Remove(ctx, name); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := m.stopProxy(ctx, r.ID); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("remove run %s: %w", r.ID, errors.Join(errs...))
	}
	dir := m.Store.RunDir(r.ID)
	if err := workspace.Remove(ctx, r.Project, r.ID, filepath.Join(dir, "workspace"), true); err != nil {
		return nil, fmt.Errorf("remove run %s: %w", r.ID, err)
	}
	// The conversation is a log: it outlives the home, for --resume.
	if err := m.keepSession(r); err != nil {
		return nil, fmt.Errorf("remove run %s: %w", r.ID, err)
	}
	for _, d := range []string{"home", "out", "sock"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("remove run %s: %w", r.ID, errors.Join(errs...))
	}
	return m.Store.Update(r.ID, func(r *store.Run) error {
		if !r.Status.Finished() {
			r.Status = store.StatusStopped
			r.Error = "removed while running"
			r.FinishedAt = m.now()
		}
		r.RemovedAt = m.now()
		return nil
	})
}

func copyHasGit(runDir string) bool {
	_, err := os.Stat(filepath.Join(runDir, "workspace", ".git"))
	return err == nil
}

// Orphans lists containers labelled as airlock's whose run is unknown or
// removed, for `clean`.
func (m *Manager) Orphans(ctx context.Context) ([]sandbox.State, error) {
	all, err := m.Engine.List(ctx, map[string]string{})
	if err != nil {
		return nil, err
	}
	var out []sandbox.State
	for _, c := range all {
		id, ok := c.Labels[LabelRun]
		if !ok {
			continue
		}
		r, err := m.Store.Get(id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && r.Removed()) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Elapsed is how long a run has been going, or went.
func Elapsed(r *store.Run, now time.Time) time.Duration {
	switch {
	case r.StartedAt.IsZero():
		return 0
	case r.FinishedAt.IsZero():
		return now.Sub(r.StartedAt)
	}
	return r.FinishedAt.Sub(r.StartedAt)
}
