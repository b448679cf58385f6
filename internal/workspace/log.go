package workspace

import (
	"context"
	"fmt"
	"io"
	"slices"
)

// Log writes `git log OPTIONS base..airlock/<id>` run in the user's
// repository to w: the run's commits, once they have been brought back.
// The commits are the agent's, so external diff drivers and textconv stay
// off (a --stat would run them on its files) and so does signature
// checking; the caller's options come after, and the range is given after
// --end-of-options.
func Log(ctx context.Context, repo, base, id string, options []string, w io.Writer) error {
	g := defaultGit()
	if err := checkID(id); err != nil {
		return err
	}
	if !hexSHA.MatchString(base) {
		return fmt.Errorf("log of run %s: invalid base commit %q", id, base)
	}
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return err
	}
	args := slices.Concat(
		[]string{"log", "--no-ext-diff", "--no-textconv", "--no-show-signature", "--no-color", "--no-relative"},
		options,
		[]string{"--end-of-options", base + ".." + branchRef(id), "--"})
	if err := g.stream(ctx, root, w, args...); err != nil {
		return fmt.Errorf("log of run %s: %w", id, err)
	}
	return nil
}
