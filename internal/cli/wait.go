package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

type waitOptions struct {
	AllProjects bool
}

func newWaitCmd(f *Factory) *cobra.Command {
	var opts waitOptions
	cmd := &cobra.Command{
		Use:   "wait [RUN...]",
		Short: "Wait for runs to finish; exit status 0 only if every agent succeeded",
		Long: `Block until the runs' agents have finished (RUN defaults to this project's
latest run), bring each one's work into your repository as branch
airlock/<run>, and print each outcome as it comes.

Exit status: 0 if every agent succeeded, 3 if any failed or was stopped, 1 on
error.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return waitRun(cmd.Context(), f, args, opts)
		},
	}
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func waitRun(ctx context.Context, f *Factory, refs []string, opts waitOptions) error {
	if len(refs) == 0 {
		refs = []string{""}
	}
	// Resolve every reference before waiting: a typo is an error at once,
	// not after the other runs have finished.
	var runs []*store.Run
	seen := map[string]bool{}
	for _, ref := range refs {
		r, err := f.resolveRun(ctx, ref, opts.AllProjects)
		if err != nil {
			return err
		}
		if !seen[r.ID] {
			seen[r.ID] = true
			runs = append(runs, r)
		}
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	if len(runs) == 1 {
		r, err := m.Wait(ctx, runs[0])
		if err != nil {
			return err
		}
		return outcome(f, r)
	}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		errs   []error
		failed bool
	)
	for _, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := m.Wait(ctx, r)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			text, ok := outcomeText(r)
			fmt.Fprint(f.IO.ErrOut, text)
			failed = failed || !ok
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if failed {
		return &ExitError{Code: ExitRunFail}
	}
	return nil
}

// outcome prints a finished run's result and turns failure into exit status 3.
func outcome(f *Factory, r *store.Run) error {
	text, ok := outcomeText(r)
	fmt.Fprint(f.IO.ErrOut, text)
	if !ok {
		return &ExitError{Code: ExitRunFail}
	}
	return nil
}

// outcomeText is a finished run's result and next steps, and whether the
// agent succeeded.
func outcomeText(r *store.Run) (string, bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s %s", r.ID, r.Status)
	if r.Error != "" {
		fmt.Fprintf(&b, ": %s", untrusted.Text(r.Error))
	}
	b.WriteString("\n")
	b.WriteString(nextSteps(r))
	return b.String(), r.Status == store.StatusSucceeded || r.Status == store.StatusMerged
}
