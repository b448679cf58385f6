package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MergeOptions chooses how a run is merged.
type MergeOptions struct {
	Squash             bool // one new commit instead of the agent's history
	IncludeUncommitted bool // merge the snapshot of uncommitted changes too
}

// MergeResult says what Merge did.
type MergeResult struct {
	Into                string // the user's branch
	Merged              string // the ref merged
	Commit              string // the branch's new head
	UpToDate            bool   // nothing to merge
	FastForward         bool
	Squashed            bool
	IncludedUncommitted bool
}

// DirtyError lists the user's files that stand in the way of a merge.
type DirtyError struct {
	Files []string
}

func (e *DirtyError) Error() string {
	return fmt.Sprintf("%v: %s; commit or stash them first", ErrDirty, strings.Join(e.Files, ", "))
}
func (e *DirtyError) Is(target error) bool { return target == ErrDirty }

// ConflictError is a merge that could not be done automatically. The merge
// has been undone; Hint says how to do it by hand.
type ConflictError struct {
	Ref   string
	Files []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v in %s; nothing was changed. To resolve it by hand: git merge %s",
		ErrConflict, strings.Join(e.Files, ", "), e.Ref)
}
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Merge merges the run into the user's current branch: a fast-forward when
// possible, else a merge commit "Merge airlock run <id>", or with Squash one
// new commit. It refuses, changing nothing, when HEAD is detached, another
// merge/rebase/cherry-pick/revert/bisect is under way, any tracked file is
// modified or staged, or the merge would overwrite an untracked or ignored
// file (git itself would silently overwrite ignored ones). On conflict it
// undoes the merge and returns a *ConflictError. The user's hooks do not run.
func Merge(ctx context.Context, repo, id string, opts MergeOptions) (MergeResult, error) {
	return merge(ctx, defaultGit(), repo, id, opts)
}

func merge(ctx context.Context, g gitRunner, repo, id string, opts MergeOptions) (MergeResult, error) {
	if err := checkID(id); err != nil {
		return MergeResult{}, err
	}
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return MergeResult{}, err
	}
	unlock, err := lockRepo(ctx, g, root)
	if err != nil {
		return MergeResult{}, err
	}
	defer unlock()

	into, err := currentBranch(ctx, g, root)
	if err != nil {
		return MergeResult{}, fmt.Errorf("merge run %s: %w", id, err)
	}
	res := MergeResult{Into: into, Merged: Branch(id)}
	target, err := resolveCommit(ctx, g, root, branchRef(id))
	if err != nil {
		return res, fmt.Errorf("merge run %s: %w", id, err)
	}
	if target == "" {
		return res, fmt.Errorf("merge run %s: %w: %s does not exist in %s", id, ErrNoRun, Branch(id), root)
	}
	if opts.IncludeUncommitted {
		snap, err := resolveCommit(ctx, g, root, snapshotRefFor(id))
		if err != nil {
			return res, fmt.Errorf("merge run %s: %w", id, err)
		}
		if snap != "" {
			target, res.Merged, res.IncludedUncommitted = snap, snapshotRefFor(id), true
		}
	}
	if err := checkMergeable(ctx, g, root, target); err != nil {
		return res, fmt.Errorf("merge run %s into %s: %w", id, into, err)
	}
	head, err := resolveCommit(ctx, g, root, "HEAD")
	if err != nil {
		return res, fmt.Errorf("merge run %s: %w", id, err)
	}
	if isAncestor(ctx, g, root, target, head) {
		res.UpToDate, res.Commit = true, head
		return res, nil
	}

	var args []string
	switch {
	case opts.Squash:
		args = []string{"merge", "--squash", "--no-verify", "--no-stat", "--end-of-options", target}
	case isAncestor(ctx, g, root, head, target):
		args = []string{"merge", "--ff-only", "--no-verify", "--no-stat", "--end-of-options", target}
		res.FastForward = true
	default:
		args = []string{"merge", "--no-ff", "--no-edit", "--no-verify", "--no-stat", "-m", "Merge airlock run " + id, "--end-of-options", target}
	}
	// A failed merge is undone completely, down to ORIG_HEAD, which both
	// git merge and the undoing reset overwrite.
	origHead, _ := g.line(ctx, root, "rev-parse", "--path-format=absolute", "--git-path", "ORIG_HEAD")
	origContent, origErr := os.ReadFile(origHead)
	undo := func(cause error) error {
		err := undoMerge(ctx, g, root, head, res.Merged, cause)
		if origHead != "" {
			if origErr == nil {
				_ = os.WriteFile(origHead, origContent, 0o644)
			} else if errors.Is(origErr, os.ErrNotExist) {
				_ = os.Remove(origHead)
			}
		}
		return err
	}
	if _, err := g.run(ctx, root, args...); err != nil {
		return res, undo(err)
	}
	if opts.Squash {
		msg, _ := g.run(ctx, root, "log", "--format=* %s", head+".."+target)
		msg = fmt.Sprintf("Squashed airlock run %s\n\n%s", id, msg)
		if err := g.runStdin(ctx, root, msg, "commit", "--quiet", "--no-verify", "--cleanup=strip", "-F", "-"); err != nil {
			return res, undo(err)
		}
		res.Squashed = true
	}
	res.Commit, err = resolveCommit(ctx, g, root, "HEAD")
	return res, err
}

// checkMergeable is every refusal that must happen before anything changes.
func checkMergeable(ctx context.Context, g gitRunner, root, target string) error {
	for _, st := range []struct{ path, what string }{
		{"MERGE_HEAD", "a merge"}, {"rebase-merge", "a rebase"}, {"rebase-apply", "a rebase or am"},
		{"CHERRY_PICK_HEAD", "a cherry-pick"}, {"REVERT_HEAD", "a revert"}, {"BISECT_LOG", "a bisect"},
	} {
		p, err := g.line(ctx, root, "rev-parse", "--path-format=absolute", "--git-path", st.path)
		if err != nil {
			return err
		}
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s is in progress; finish or abort it first", ErrInProgress, st.what)
		}
	}
	out, err := g.run(ctx, root, "status", "--porcelain=v1", "-z", "--untracked-files=no", "--ignore-submodules=none")
	if err != nil {
		return err
	}
	var dirty []string
	fields := nulFields(out)
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if len(f) < 4 {
			continue
		}
		dirty = append(dirty, f[3:])
		if strings.ContainsAny(f[:2], "RC") {
			i++ // the rename's source path follows
		}
	}
	if len(dirty) > 0 {
		return &DirtyError{Files: dirty}
	}

	// Untracked (and ignored) files the merge would create over. The merge
	// only writes paths where HEAD and target differ.
	tracked := map[string]bool{}
	out, err = g.run(ctx, root, "ls-files", "-z")
	if err != nil {
		return err
	}
	for _, f := range nulFields(out) {
		tracked[f] = true
	}
	out, err = g.run(ctx, root, "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", "HEAD", target, "--")
	if err != nil {
		return err
	}
	var inWay []string
	seen := map[string]bool{}
	for _, f := range nulFields(out) {
		// The path itself, or a parent that is a file where target needs a directory.
		for p := f; p != "." && p != "/" && p != ""; p = filepath.Dir(p) {
			if tracked[p] || seen[p] {
				continue
			}
			fi, err := os.Lstat(filepath.Join(root, p))
			if err != nil {
				continue
			}
			if p == f || !fi.IsDir() {
				seen[p] = true
				inWay = append(inWay, p)
			}
		}
	}
	if len(inWay) > 0 {
		return &DirtyError{Files: inWay}
	}
	return nil
}

// undoMerge puts the repository back as it was before a failed merge and
// explains why it failed.
func undoMerge(ctx context.Context, g gitRunner, root, head, ref string, cause error) error {
	out, _ := g.run(ctx, root, "diff", "--name-only", "-z", "--diff-filter=U")
	conflicts := nulFields(out)
	bg := context.WithoutCancel(ctx)
	_, err := g.run(bg, root, "reset", "--quiet", "--merge", head)
	if cur, _ := resolveCommit(bg, g, root, "HEAD"); err == nil && cur != head {
		err = fmt.Errorf("HEAD moved to %s", cur)
	}
	if err != nil {
		return errors.Join(cause, fmt.Errorf("could not undo the failed merge (HEAD was %s): %w", head, err))
	}
	if len(conflicts) > 0 {
		return &ConflictError{Ref: shortRef(ref), Files: conflicts}
	}
	return cause
}

func shortRef(ref string) string {
	return strings.TrimPrefix(ref, "refs/heads/")
}

func isAncestor(ctx context.Context, g gitRunner, root, a, b string) bool {
	_, err := g.run(ctx, root, "merge-base", "--is-ancestor", a, b)
	return err == nil
}
