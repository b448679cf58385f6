package workspace

import (
	"context"
	"fmt"
	"io"
)

// DiffOptions shapes Diff's output.
type DiffOptions struct {
	Stat  bool // a diffstat instead of the patch
	Color bool // ANSI colour (when writing to a terminal)
}

// UncommittedHeader introduces the snapshot part of Diff's output.
const UncommittedHeader = "Uncommitted changes left by the agent"

// Diff writes the run's committed changes since base (base...airlock/<id>)
// and, when the run left uncommitted changes, those too under a header. It
// runs in the user's repository with external diff drivers and textconv
// off: the files are the agent's, the drivers would be run on them.
func Diff(ctx context.Context, repo, base, id string, opts DiffOptions, w io.Writer) error {
	g := defaultGit()
	if err := checkID(id); err != nil {
		return err
	}
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return err
	}
	head, err := resolveCommit(ctx, g, root, branchRef(id))
	if err != nil {
		return fmt.Errorf("diff run %s: %w", id, err)
	}
	if head == "" {
		return fmt.Errorf("diff run %s: %w: %s does not exist in %s", id, ErrNoRun, Branch(id), root)
	}
	snap, err := resolveCommit(ctx, g, root, snapshotRefFor(id))
	if err != nil {
		return fmt.Errorf("diff run %s: %w", id, err)
	}
	args := []string{"diff", "--no-ext-diff", "--no-textconv", "--color=never"}
	if opts.Color {
		args[3] = "--color=always"
	}
	if opts.Stat {
		args = append(args, "--stat")
	}
	if err := g.stream(ctx, root, w, append(args, "--end-of-options", base+"..."+head, "--")...); err != nil {
		return fmt.Errorf("diff run %s: %w", id, err)
	}
	if snap == "" {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\n# %s (not committed on %s):\n\n", UncommittedHeader, Branch(id)); err != nil {
		return err
	}
	if err := g.stream(ctx, root, w, append(args, "--end-of-options", head, snap, "--")...); err != nil {
		return fmt.Errorf("diff run %s: %w", id, err)
	}
	return nil
}
