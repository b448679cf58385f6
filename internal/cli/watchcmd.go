package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

type watchOptions struct {
	// New skips the commits the run already has.
	New         bool
	AllProjects bool
	// Interval is how often the run is looked at.
	Interval time.Duration
}

func newWatchCmd(f *Factory) *cobra.Command {
	opts := watchOptions{Interval: time.Second}
	cmd := &cobra.Command{
		Use:   "watch [RUN]",
		Short: "Show each commit as the agent makes it, with its stat",
		Long: `Follow a run's commits as the agent makes them: for each, its short id and
subject, then its --stat, and the terminal's bell (when the output is a
terminal). The commits the run already has come first, unless --new. Watching
ends when the run does, with its outcome and what to do next; Ctrl-C stops
watching and leaves the run going.

RUN defaults to this project's latest running run (or, when none is running,
its latest run). While the run runs, its commits are read by git inside its
sandbox; once it has finished, from the branch its work was brought back to.

Exit status: as airlock wait: 0 if the agent succeeded, 3 if it failed or was
stopped, 1 on error; 0 when interrupted.`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			return watchCommits(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.New, "new", false, "show only commits made from now on")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

// watchErrorsMax is how many listings in a row may fail (an exec racing
// the agent's exit, the engine busy) before watching gives up.
const watchErrorsMax = 5

func watchCommits(ctx context.Context, f *Factory, ref string, opts watchOptions) error {
	r, err := f.resolveWatched(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	w := commitWatcher{m: m, out: f.IO.Out, bell: f.IO.StdoutTTY, seen: map[string]bool{}}
	fmt.Fprintf(f.IO.ErrOut, "Watching the commits of run %s (Ctrl-C stops watching; the run goes on)\n", r.ID)
	first, failures := true, 0
	for {
		// From the store: a listing may have recorded the run's end.
		if cur, err := f.storeGet(r.ID); err == nil {
			r = cur
		}
		if cur, err := m.Reconcile(ctx, r); err == nil {
			r = cur
		}
		// Ended before this listing: it is the last, from the branch the
		// run's work was brought back to.
		ended := r.Status.Finished()
		if r.Status != store.StatusCreating {
			err := w.poll(ctx, r, first && opts.New, !first)
			switch {
			case ctx.Err() != nil:
				return watchInterrupted(f, r)
			case err == nil && ended:
				if cur, err := f.storeGet(r.ID); err == nil {
					r = cur
				}
				return outcome(f, r)
			case err == nil:
				first, failures = false, 0
			default:
				cur, gerr := f.storeGet(r.ID)
				if gerr != nil {
					return err
				}
				switch {
				case cur.Removed():
					return fmt.Errorf("run %s was removed while being watched", r.ID)
				case cur.Status.Finished() && cur.HarvestError != "":
					// No branch to list: the outcome says why.
					return outcome(f, cur)
				case cur.Status.Finished() && !ended:
					// It ended while being listed, the exec meeting a
					// stopping container: list it from its branch.
					r = cur
					continue
				case first || failures+1 >= watchErrorsMax:
					return err
				}
				failures++
			}
		}
		select {
		case <-ctx.Done():
			return watchInterrupted(f, r)
		case <-time.After(opts.Interval):
		}
	}
}

// watchInterrupted is a clean end: watching stopped, the run goes on.
func watchInterrupted(f *Factory, r *store.Run) error {
	fmt.Fprintf(f.IO.ErrOut, "Stopped watching run %s (`airlock watch %s` to go on)\n", r.ID, r.ID)
	return nil
}

// resolveWatched is RUN, or the project's latest running run, or else its
// latest run.
func (f *Factory) resolveWatched(ctx context.Context, ref string, allProjects bool) (*store.Run, error) {
	return f.resolvePreferring(ctx, ref, allProjects, func(r *store.Run) bool {
		return r.Status == store.StatusRunning || r.Status == store.StatusCreating
	})
}

// commitWatcher prints a run's commits it has not printed yet.
type commitWatcher struct {
	m    *run.Manager
	out  io.Writer
	bell bool
	seen map[string]bool
}

// poll lists the run's commits and prints the new ones, oldest first, or,
// with skip, only notes them as seen. ring rings the bell for new ones.
// The stat is asked for only when there is something new to print.
func (w *commitWatcher) poll(ctx context.Context, r *store.Run, skip, ring bool) error {
	commits, err := w.m.Commits(ctx, r, false)
	if err != nil {
		return err
	}
	fresh := 0
	for _, c := range commits {
		if !w.seen[c.SHA] {
			fresh++
		}
	}
	if fresh == 0 {
		return nil
	}
	if !skip {
		if commits, err = w.m.Commits(ctx, r, true); err != nil {
			return err
		}
	}
	for _, c := range commits {
		if w.seen[c.SHA] {
			continue
		}
		w.seen[c.SHA] = true
		if skip {
			continue
		}
		if ring && w.bell {
			fmt.Fprint(w.out, "\a")
			ring = false // once for the lot
		}
		if _, err := io.WriteString(w.out, commitText(c)); err != nil {
			return err
		}
	}
	return nil
}

// commitText is one commit as watch prints it. The subject and stat are
// the agent's: sanitised for the terminal.
func commitText(c run.Commit) string {
	s := fmt.Sprintf("%s %s\n", c.SHA[:min(7, len(c.SHA))], untrusted.Line(c.Subject))
	if c.Stat != "" {
		s += untrusted.Text(c.Stat) + "\n"
	}
	return s + "\n"
}
