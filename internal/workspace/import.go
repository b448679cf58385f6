package workspace

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// Imported says what Import brought into the user's repository.
type Imported struct {
	Branch      string // airlock/<id>
	Head        string // its commit
	Uncommitted string // snapshot commit (refs/airlock/uncommitted/<id>), or ""
}

// Import fetches a harvest bundle into repo as branch airlock/<id> and, when
// the bundle has one, the snapshot of uncommitted changes as
// refs/airlock/uncommitted/<id>. It never looks at the copy. The bundle must
// list exactly the refs the harvest script makes; objects are fsck-checked;
// the user's hooks do not run. Importing again replaces the refs, unless the
// run's branch is checked out somewhere.
func Import(ctx context.Context, repo, bundle, id string) (Imported, error) {
	return importBundle(ctx, defaultGit(), repo, bundle, id)
}

func importBundle(ctx context.Context, g gitRunner, repo, bundle, id string) (Imported, error) {
	if err := checkID(id); err != nil {
		return Imported{}, err
	}
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return Imported{}, err
	}
	bundle, err = filepath.Abs(bundle)
	if err != nil {
		return Imported{}, fmt.Errorf("import run %s: %w", id, err)
	}
	f, err := openRegular(bundle)
	if err != nil {
		return Imported{}, fmt.Errorf("import run %s: %w", id, err)
	}
	f.Close()

	unlock, err := lockRepo(ctx, g, root)
	if err != nil {
		return Imported{}, err
	}
	defer unlock()

	heads, err := g.run(ctx, root, "bundle", "list-heads", bundle)
	if err != nil {
		return Imported{}, fmt.Errorf("import run %s: read bundle: %w", id, err)
	}
	want := map[string]string{"refs/heads/" + Branch(id): "", snapshotRef: ""}
	for _, l := range lines(heads) {
		sha, ref, ok := strings.Cut(l, " ")
		if _, expected := want[ref]; !ok || !expected || !hexSHA.MatchString(sha) || want[ref] != "" {
			return Imported{}, fmt.Errorf("import run %s: %w: %s lists %q; expected only refs/heads/%s and %s",
				id, ErrBadBundle, bundle, l, Branch(id), snapshotRef)
		}
		want[ref] = sha
	}
	head, snap := want["refs/heads/"+Branch(id)], want[snapshotRef]
	if head == "" {
		return Imported{}, fmt.Errorf("import run %s: %w: %s has no branch %s", id, ErrBadBundle, bundle, Branch(id))
	}
	if err := checkNotCheckedOut(ctx, g, root, id, head); err != nil {
		return Imported{}, err
	}

	// Fetch into a private namespace first, check, then move into place in
	// one transaction, so a bad bundle leaves the visible refs untouched.
	tmp := "refs/airlock/import/" + id
	refspecs := []string{"+refs/heads/" + Branch(id) + ":" + tmp + "/head"}
	if snap != "" {
		refspecs = append(refspecs, "+"+snapshotRef+":"+tmp+"/uncommitted")
	}
	args := append([]string{
		"-c", "transfer.fsckObjects=true", "-c", "fetch.fsckObjects=true",
		"-c", "fetch.writeCommitGraph=false",
		"fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
		"--no-auto-gc", "--no-show-forced-updates", "--", bundle,
	}, refspecs...)
	if _, err := g.run(ctx, root, args...); err != nil {
		deleteRefs(ctx, g, root, tmp+"/head", tmp+"/uncommitted")
		if strings.Contains(err.Error(), "prerequisite") || strings.Contains(err.Error(), "lacks these") {
			return Imported{}, fmt.Errorf("import run %s: the bundle builds on commits this repository no longer has (was the base branch deleted and garbage-collected?): %w", id, err)
		}
		return Imported{}, fmt.Errorf("import run %s: %w", id, err)
	}
	defer deleteRefs(context.WithoutCancel(ctx), g, root, tmp+"/head", tmp+"/uncommitted")

	if snap != "" {
		parents, err := g.run(ctx, root, "rev-list", "--parents", "-n", "1", snap)
		if err != nil {
			return Imported{}, fmt.Errorf("import run %s: %w", id, err)
		}
		if f := strings.Fields(parents); len(f) != 2 || f[1] != head {
			return Imported{}, fmt.Errorf("import run %s: %w: the uncommitted-changes snapshot is not a child of the branch head", id, ErrBadBundle)
		}
	}
	var tx strings.Builder
	fmt.Fprintf(&tx, "update %s %s\n", branchRef(id), head)
	if snap != "" {
		fmt.Fprintf(&tx, "update %s %s\n", snapshotRefFor(id), snap)
	} else {
		fmt.Fprintf(&tx, "delete %s\n", snapshotRefFor(id))
	}
	if err := g.runStdin(ctx, root, tx.String(), "update-ref", "--stdin"); err != nil {
		return Imported{}, fmt.Errorf("import run %s: %w", id, err)
	}
	return Imported{Branch: Branch(id), Head: head, Uncommitted: snap}, nil
}

// checkNotCheckedOut refuses to move the run's branch under a work tree that
// has it checked out (the user may be trying the work out).
func checkNotCheckedOut(ctx context.Context, g gitRunner, root, id, newHead string) error {
	out, err := g.run(ctx, root, "worktree", "list", "--porcelain")
	if err != nil {
		return fmt.Errorf("list worktrees of %s: %w", root, err)
	}
	var wt string
	for _, l := range lines(out) {
		if p, ok := strings.CutPrefix(l, "worktree "); ok {
			wt = p
		}
		if l == "branch "+branchRef(id) {
			cur, _ := resolveCommit(ctx, g, root, branchRef(id))
			if cur == newHead {
				return nil
			}
			return fmt.Errorf("%w: %s is checked out in %s; switch to another branch and try again", ErrCheckedOut, Branch(id), wt)
		}
	}
	return nil
}

// deleteRefs removes refs, ignoring ones that do not exist.
func deleteRefs(ctx context.Context, g gitRunner, root string, refs ...string) {
	var tx strings.Builder
	for _, r := range refs {
		if sha, _ := resolveCommit(ctx, g, root, r); sha != "" {
			fmt.Fprintf(&tx, "delete %s\n", r)
		}
	}
	if tx.Len() > 0 {
		_ = g.runStdin(ctx, root, tx.String(), "update-ref", "--stdin")
	}
}
