package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// DiffOptions shapes Diff's output.
type DiffOptions struct {
	Stat     bool // a diffstat instead of the patch
	NameOnly bool // only the names of the changed files, once each
	Color    bool // ANSI colour (when writing to a terminal)
	// Paths limits the diff to these pathspecs, relative to the top of the
	// repository.
	Paths []string
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
	switch {
	case opts.NameOnly:
		args = append(args, "--name-only")
	case opts.Stat:
		args = append(args, "--stat")
	}
	diff := func(w io.Writer, revs ...string) error {
		a := slices.Concat(args, []string{"--end-of-options"}, revs, []string{"--"}, opts.Paths)
		if err := g.stream(ctx, root, w, a...); err != nil {
			return fmt.Errorf("diff run %s: %w", id, err)
		}
		return nil
	}
	if opts.NameOnly {
		return nameOnly(w, diff, [][]string{{base + "..." + head}, {head, snap}}, snap != "")
	}
	if err := diff(w, base+"..."+head); err != nil {
		return err
	}
	if snap == "" {
		return nil
	}
	if len(opts.Paths) > 0 {
		// No header over nothing: do the leftovers touch these paths?
		_, err := g.run(ctx, root, slices.Concat([]string{"diff", "--quiet", "--no-ext-diff", "--no-textconv", "--end-of-options", head, snap, "--"}, opts.Paths)...)
		var gerr *GitError
		switch {
		case err == nil:
			return nil
		case !errors.As(err, &gerr) || gerr.ExitCode != 1:
			return fmt.Errorf("diff run %s: %w", id, err)
		}
	}
	if _, err := fmt.Fprintf(w, "\n# %s (not committed on %s):\n\n", UncommittedHeader, Branch(id)); err != nil {
		return err
	}
	return diff(w, head, snap)
}

// nameOnly lists the files changed in the run's commits and in its
// uncommitted leftovers (withSnap), each once: a list for scripts, with no
// header to parse around.
func nameOnly(w io.Writer, diff func(io.Writer, ...string) error, ranges [][]string, withSnap bool) error {
	if !withSnap {
		ranges = ranges[:1]
	}
	seen := map[string]bool{}
	for _, revs := range ranges {
		var buf bytes.Buffer
		if err := diff(&buf, revs...); err != nil {
			return err
		}
		for _, name := range strings.SplitAfter(buf.String(), "\n") {
			if name == "" || seen[name] {
				continue
			}
			seen[name] = true
			if _, err := io.WriteString(w, name); err != nil {
				return err
			}
		}
	}
	return nil
}
