package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// PushOptions are airlock push's, and the web UI's push action's.
type PushOptions struct {
	Remote      string // a remote of the user's repository; "" is origin
	Branch      string // the branch on the remote; "" is the run's, airlock/<id>
	AllProjects bool   // find RUN among every project's runs (the command only)
}

func newPushCmd(f *Factory) *cobra.Command {
	var opts PushOptions
	cmd := &cobra.Command{
		Use:   "push [RUN]",
		Short: "Push a run's branch from your repository to a remote",
		Long: `Push the run's branch (airlock/<run>, as brought back into your repository) to a
remote of your repository, as --branch (default: the same name).

It runs git on your repository, never in the agent's copy. It never
force-pushes: if the branch on the remote has commits the run's has not,
the push is refused and nothing there changes (push under another name
with --branch). Pushing a branch that is already there is fine. Tags and
submodules are not pushed, and no git hook runs, your pre-push hook
included: it would run on the agent's work.

Only the run's commits are pushed; changes the agent left uncommitted are
not (merge them with airlock merge --include-uncommitted and push your
branch yourself).`,
		Example: `  airlock push fix-auth
  airlock push fix-auth --remote fork --branch fix-auth`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			return pushCmd(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Remote, "remote", "origin", "the remote to push to")
	cmd.Flags().StringVar(&opts.Branch, "branch", "", "the branch name on the remote (default: the run's branch, airlock/<run>)")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func pushCmd(ctx context.Context, f *Factory, ref string, opts PushOptions) error {
	r, err := f.resolveRun(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	msg, err := f.pushRun(ctx, r, opts)
	if err != nil {
		return err
	}
	fmt.Fprintln(f.IO.ErrOut, msg)
	return nil
}

// pushRun pushes a finished run's branch and says what it did, in one
// line. It is the push of both the command and the web UI.
func (f *Factory) pushRun(ctx context.Context, r *store.Run, opts PushOptions) (string, error) {
	m, err := f.manager()
	if err != nil {
		return "", err
	}
	res, r, err := m.Push(ctx, r, workspace.PushOptions{Remote: opts.Remote, Branch: opts.Branch})
	if err != nil {
		return "", err
	}
	return pushMessage(r, res), nil
}

func pushMessage(r *store.Run, res workspace.PushResult) string {
	what := "updated"
	switch {
	case res.UpToDate:
		what = "already there, up to date"
	case res.Created:
		what = "new branch"
	}
	short := res.Commit
	if len(short) > 12 {
		short = short[:12]
	}
	return fmt.Sprintf("Pushed %s (%s) of %s to %s (%s) as %s: %s.",
		workspace.Branch(r.ID), short, r.Project, res.Remote, res.URL, res.Branch, what)
}
