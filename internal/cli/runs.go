package cli

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
)

// resolveRun finds the run a command means: RUN as given, or the project's
// most recent run.
func (f *Factory) resolveRun(ctx context.Context, ref string) (*store.Run, error) {
	st, err := f.Store()
	if err != nil {
		return nil, err
	}
	project, perr := f.project(ctx)
	if perr != nil && ref == "" {
		return nil, perr
	}
	return st.Resolve(project, ref)
}

// runAndManager resolves RUN and builds the manager, the start of most
// commands that act on one run.
func (f *Factory) runAndManager(ctx context.Context, ref string) (*store.Run, *run.Manager, error) {
	r, err := f.resolveRun(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	m, err := f.manager()
	if err != nil {
		return nil, nil, err
	}
	return r, m, nil
}

// finished reports, for followers, whether a run has ended (or can no
// longer be looked at).
func (f *Factory) finished(ctx context.Context, m *run.Manager, id string) func() bool {
	return func() bool {
		cur, err := f.storeGet(id)
		if err != nil {
			return true
		}
		cur, err = m.Reconcile(ctx, cur)
		return err != nil || cur.Status.Finished()
	}
}

// age renders a duration the way people read it in a table.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func cost(usd float64) string {
	if usd == 0 {
		return "-"
	}
	return fmt.Sprintf("$%.2f", usd)
}

func statusText(r *store.Run) string {
	s := string(r.Status)
	if r.Removed() {
		s += " (removed)"
	}
	return s
}

// nextSteps tells people what they can do with a finished run.
func nextSteps(r *store.Run) string {
	var b strings.Builder
	switch {
	case r.HarvestError != "":
		fmt.Fprintf(&b, "The run's work could not be brought back: %s\n", r.HarvestError)
	case r.Head != "" && r.Head != r.BaseCommit || r.Uncommitted != "":
		fmt.Fprintf(&b, "Review:  airlock diff %s\nMerge:   airlock merge %s", r.ID, r.ID)
		if r.Uncommitted != "" {
			b.WriteString("   (the agent left uncommitted changes: add --include-uncommitted to take them too)")
		}
		fmt.Fprintf(&b, "\nDiscard: airlock rm %s --force\n", r.ID)
	default:
		fmt.Fprintf(&b, "The agent changed nothing. Remove the run with: airlock rm %s\n", r.ID)
	}
	return b.String()
}

// confirmStart asks y/N before a run or session starts, when a person is
// at the terminal and neither -y nor [egress] confirm = false says not to.
func (f *Factory) confirmStart(what string, enabled, yes bool) error {
	if !f.IO.StdinTTY || !enabled || yes {
		return nil
	}
	fmt.Fprintf(f.IO.ErrOut, "Start the %s? [y/N] ", what)
	answer, _ := bufio.NewReader(f.IO.In).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return &ExitError{Code: ExitFailure, Message: "not started"}
	}
	return nil
}
