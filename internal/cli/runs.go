package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// resolveRun finds the run a command means: RUN as given, or the project's
// most recent run. References resolve within the current project (the
// repository the user is in) unless allProjects: a run of another
// repository is named in the error, never acted on.
func (f *Factory) resolveRun(ctx context.Context, ref string, allProjects bool) (*store.Run, error) {
	st, err := f.Store()
	if err != nil {
		return nil, err
	}
	project, perr := f.project(ctx)
	switch {
	case allProjects && ref != "":
		project = ""
	case perr != nil && ref != "":
		return nil, fmt.Errorf("%w (or add --all-projects to find run %q in any project)", perr, ref)
	case perr != nil:
		return nil, perr
	}
	r, err := st.Resolve(project, ref)
	if errors.Is(err, store.ErrOtherProject) {
		return nil, fmt.Errorf("%w (cd there, or add --all-projects)", err)
	}
	return r, err
}

// runAndManager resolves RUN and builds the manager, the start of most
// commands that act on one run.
func (f *Factory) runAndManager(ctx context.Context, ref string, allProjects bool) (*store.Run, *run.Manager, error) {
	r, err := f.resolveRun(ctx, ref, allProjects)
	if err != nil {
		return nil, nil, err
	}
	m, err := f.manager()
	if err != nil {
		return nil, nil, err
	}
	return r, m, nil
}

// addAllProjectsFlag adds --all-projects to a command taking run references.
func addAllProjectsFlag(cmd *cobra.Command, p *bool) {
	cmd.Flags().BoolVar(p, "all-projects", false, "find RUN among the runs of every project, not only this repository's")
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

// cost renders dollars for a table: cents, or 4 significant digits below a
// cent, where cents would round a real cost to $0.00.
func cost(usd float64) string {
	switch {
	case usd == 0:
		return "-"
	case usd < 0.01:
		return "$" + strconv.FormatFloat(roundSig(usd, 4), 'f', -1, 64)
	}
	return fmt.Sprintf("$%.2f", usd)
}

// roundSig rounds x to n significant digits: float sums such as
// 0.00014000000000000001 print as the 0.00014 they mean.
func roundSig(x float64, n int) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(x, 'g', n, 64), 64)
	if err != nil {
		return x
	}
	return v
}

// totalCost is the table's closing line: what the listed runs cost together.
func totalCost(runs []*store.Run) string {
	var sum float64
	for _, r := range runs {
		sum += r.CostUSD
	}
	if sum == 0 {
		return fmt.Sprintf("Total cost of %d run(s): $0", len(runs))
	}
	return fmt.Sprintf("Total cost of %d run(s): %s", len(runs), cost(sum))
}

func statusText(r *store.Run) string {
	s := string(r.Status)
	if r.Status == store.StatusStopped && r.StopReason != "" {
		s += ": " + r.StopReason // "stopped: budget", "stopped: disk"
	}
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
		fmt.Fprintf(&b, "The run's work could not be brought back: %s\n", untrusted.Text(r.HarvestError))
	case r.Head != "" && r.Head != r.BaseCommit || r.Uncommitted != "":
		// Name the repository: the branch was just written into it.
		fmt.Fprintf(&b, "Its work is on branch %s in %s.\n", r.Branch, r.Project)
		fmt.Fprintf(&b, "Review:  airlock diff %s\nMerge:   airlock merge %s", r.ID, r.ID)
		if r.Uncommitted != "" {
			b.WriteString("   (the agent left uncommitted changes: add --include-uncommitted to take them too)")
		}
		fmt.Fprintf(&b, "\nDiscard: airlock rm %s --force\n", r.ID)
	case r.Head != "":
		fmt.Fprintf(&b, "The agent changed nothing (branch %s in %s). Remove the run with: airlock rm %s\n", r.Branch, r.Project, r.ID)
	default:
		fmt.Fprintf(&b, "The agent changed nothing. Remove the run with: airlock rm %s\n", r.ID)
	}
	return b.String()
}

// confirmStart asks y/N before a run or session starts, when a person is
// at the terminal and neither -y nor [egress] confirm = false says not to.
func (f *Factory) confirmStart(what string, enabled, yes bool) (asked bool, err error) {
	if !f.IO.StdinTTY || !enabled || yes {
		return false, nil
	}
	fmt.Fprintf(f.IO.ErrOut, "Start the %s? [y/N] ", what)
	answer, _ := bufio.NewReader(f.IO.In).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
		return true, &ExitError{Code: ExitFailure, Message: "not started"}
	}
	return true, nil
}
