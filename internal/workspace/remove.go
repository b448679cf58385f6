package workspace

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// UnmergedError lists the run's commits that nothing else in the user's
// repository contains.
type UnmergedError struct {
	ID      string
	Commits []string // "<short sha> <subject>"
}

func (e *UnmergedError) Error() string {
	return fmt.Sprintf("%v: %d commit(s) on %s are in no other branch or tag: %s; merge them, or remove with --force to discard them",
		ErrUnmerged, len(e.Commits), Branch(e.ID), strings.Join(e.Commits, "; "))
}
func (e *UnmergedError) Is(target error) bool { return target == ErrUnmerged }

// Unmerged lists the commits of airlock/<id>, and of its uncommitted-changes
// snapshot, that no branch, tag or remote-tracking ref outside airlock's own
// namespaces contains ("<short sha> <subject>", newest first). Work merged
// with --squash has new commits; it counts as merged when merging it into
// the current branch again would change nothing.
func Unmerged(ctx context.Context, repo, id string) ([]string, error) {
	g := defaultGit()
	if err := checkID(id); err != nil {
		return nil, err
	}
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return nil, err
	}
	return unmerged(ctx, g, root, id)
}

func unmerged(ctx context.Context, g gitRunner, root, id string) ([]string, error) {
	var tips, merged []string
	for _, ref := range []string{branchRef(id), snapshotRefFor(id)} {
		sha, err := resolveCommit(ctx, g, root, ref)
		if err != nil {
			return nil, fmt.Errorf("unmerged commits of run %s: %w", id, err)
		}
		switch {
		case sha == "":
		case mergedByContent(ctx, g, root, sha):
			merged = append(merged, sha)
		default:
			tips = append(tips, sha)
		}
	}
	if len(tips) == 0 {
		return nil, nil
	}
	// HEAD is left out on purpose: it may be the run's branch itself.
	args := append([]string{"log", "--format=%h %s"}, tips...)
	args = append(args, "--not")
	args = append(args, merged...)
	args = append(args, "--exclude=airlock/*", "--branches", "--tags", "--remotes", "--")
	out, err := g.run(ctx, root, args...)
	if err != nil {
		return nil, fmt.Errorf("unmerged commits of run %s: %w", id, err)
	}
	return lines(out), nil
}

// mergedByContent reports whether merging commit into the current branch
// would leave its tree unchanged (so a squash merge counts as merged).
func mergedByContent(ctx context.Context, g gitRunner, root, commit string) bool {
	if _, err := currentBranch(ctx, g, root); err != nil {
		return false
	}
	tree, err := g.line(ctx, root, "merge-tree", "--write-tree", "--no-messages", "HEAD", commit)
	if err != nil {
		return false
	}
	headTree, err := g.line(ctx, root, "rev-parse", "HEAD^{tree}")
	return err == nil && tree == headTree
}

// Remove deletes the run's copy (copyDir, with os.RemoveAll: never git, the
// copy is hostile) and then its branch and snapshot refs in repo. Unless
// force, it first refuses with an *UnmergedError when the run has work no
// other ref contains, and then deletes nothing. A missing copy or branch is
// not an error.
func Remove(ctx context.Context, repo, id, copyDir string, force bool) error {
	g := defaultGit()
	if err := checkID(id); err != nil {
		return err
	}
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return err
	}
	if copyDir != "" {
		abs, err := filepath.Abs(copyDir)
		if err != nil {
			return fmt.Errorf("remove run %s: %w", id, err)
		}
		if rel, err := filepath.Rel(abs, root); err == nil && !strings.HasPrefix(rel, "..") {
			return fmt.Errorf("remove run %s: refusing to delete %s: it contains the repository %s", id, abs, root)
		}
		copyDir = abs
	}
	unlock, err := lockRepo(ctx, g, root)
	if err != nil {
		return err
	}
	defer unlock()

	if !force {
		commits, err := unmerged(ctx, g, root, id)
		if err != nil {
			return err
		}
		if len(commits) > 0 {
			return &UnmergedError{ID: id, Commits: commits}
		}
	}
	if cur, err := currentBranch(ctx, g, root); err == nil && cur == Branch(id) {
		return fmt.Errorf("remove run %s: %w in %s; switch to another branch first", id, ErrCheckedOut, root)
	}
	if copyDir != "" {
		if err := removeTree(copyDir); err != nil {
			return fmt.Errorf("remove run %s: delete copy: %w", id, err)
		}
	}
	if sha, _ := resolveCommit(ctx, g, root, branchRef(id)); sha != "" {
		// git branch refuses to delete a branch checked out in another worktree.
		if _, err := g.run(ctx, root, "branch", "--quiet", "-D", "--", Branch(id)); err != nil {
			return fmt.Errorf("remove run %s: %w", id, err)
		}
	}
	deleteRefs(ctx, g, root, snapshotRefFor(id))
	return nil
}
