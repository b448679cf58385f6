package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
)

// resumeSource finds the run whose conversation and work `run --resume` and
// `shell --resume` continue: RUN as given, or this project's latest
// finished run. Resume is scoped to the project: a run of another project
// is never picked by default, and refused when named.
func (f *Factory) resumeSource(ctx context.Context, m *run.Manager, project, ref string) (*store.Run, error) {
	var r *store.Run
	if ref == "" {
		runs, err := m.Store.List()
		if err != nil {
			return nil, err
		}
		for _, c := range runs {
			if c.Project != project {
				continue
			}
			if c, err = m.Collect(ctx, c); err != nil {
				return nil, err
			}
			if c.Status.Finished() {
				r = c
				break
			}
		}
		if r == nil {
			return nil, fmt.Errorf("%w: this project has no finished run to resume (see `airlock ls -a`)", store.ErrNotFound)
		}
	} else {
		var err error
		if r, err = m.Store.Resolve(project, ref); err != nil {
			return nil, err
		}
		if r.Project != project {
			return nil, fmt.Errorf("cannot resume run %s: it belongs to %s, not to this project (%s); resume continues a conversation in the project it started in", r.ID, r.Project, project)
		}
		// Collect: a resumed run starts from the earlier run's work, so
		// that must be fetched into the project first.
		if r, err = m.Collect(ctx, r); err != nil {
			return nil, err
		}
	}
	if err := m.Resumable(r); err != nil {
		if errors.Is(err, run.ErrSessionLost) {
			return nil, fmt.Errorf("%w; start a new conversation instead", err)
		}
		return nil, err
	}
	return r, nil
}

func addLifecycleFlags(fl *pflag.FlagSet, opts *runOptions) {
	fl.StringVar(&opts.Resume, "resume", "", "continue this earlier run of the project (a run ID or name): its conversation, on its work")
	fl.BoolVar(&opts.Persistent, "persistent", false, "keep the container after the agent exits (airlock start brings it back)")
}

// checkLifecycleBatch refuses --resume and --persistent for a batch: one
// conversation cannot continue in several runs at once.
func checkLifecycleBatch(opts runOptions) error {
	if len(opts.Tasks) > 1 && (opts.Resume != "" || opts.Persistent) {
		return flagErrorf("--resume and --persistent apply to a single task; got %d tasks", len(opts.Tasks))
	}
	return nil
}
