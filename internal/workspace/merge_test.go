package workspace

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// repoState is what a refused merge must leave exactly as it was. A merge
// undone after a conflict rewrites the conflicted files with their old
// content and leaves unreachable objects behind, so the index's stat data,
// the reflog and the object store are left out; everything else under .git
// (refs, ORIG_HEAD, config...) and the work tree are compared byte for byte.
type repoState struct {
	head, branch, index, status, tree string
}

func stateOf(t *testing.T, repo string) repoState {
	t.Helper()
	gitDir := filepath.Join(repo, ".git")
	tmp := t.TempDir()
	for _, p := range []string{"index", "logs", "objects"} {
		if err := os.Rename(filepath.Join(gitDir, p), filepath.Join(tmp, p)); err != nil {
			t.Fatal(err)
		}
	}
	tree := treeHash(t, repo)
	for _, p := range []string{"index", "logs", "objects"} {
		if err := os.Rename(filepath.Join(tmp, p), filepath.Join(gitDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	return repoState{
		head:   git(t, repo, "rev-parse", "HEAD"),
		branch: git(t, repo, "rev-parse", "--symbolic-full-name", "HEAD"),
		index:  git(t, repo, "ls-files", "--stage"),
		status: git(t, repo, "status", "--porcelain=v1", "--ignored", "-uall"),
		tree:   tree,
	}
}

func TestMergeRefusesAndChangesNothing(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, repo string)
		opts  MergeOptions
		want  error
		files []string // named in the error
	}{
		{"modified tracked file", func(t *testing.T, repo string) {
			writeFile(t, filepath.Join(repo, "README.md"), "user edit\n")
		}, MergeOptions{}, ErrDirty, []string{"README.md"}},
		{"staged file", func(t *testing.T, repo string) {
			writeFile(t, filepath.Join(repo, "staged.txt"), "s\n")
			git(t, repo, "add", "staged.txt")
		}, MergeOptions{Squash: true}, ErrDirty, []string{"staged.txt"}},
		{"untracked file in the way", func(t *testing.T, repo string) {
			writeFile(t, filepath.Join(repo, "feature.txt"), "user's own\n")
		}, MergeOptions{}, ErrDirty, []string{"feature.txt"}},
		{"ignored file in the way", func(t *testing.T, repo string) {
			writeFile(t, filepath.Join(repo, "notes.log"), "user's ignored file\n")
		}, MergeOptions{}, ErrDirty, []string{"notes.log"}},
		{"untracked file where a directory comes", func(t *testing.T, repo string) {
			writeFile(t, filepath.Join(repo, "pkg"), "a file\n")
		}, MergeOptions{}, ErrDirty, []string{"pkg"}},
		{"untracked file in the way of the snapshot", func(t *testing.T, repo string) {
			writeFile(t, filepath.Join(repo, "wip.txt"), "user's\n")
		}, MergeOptions{IncludeUncommitted: true}, ErrDirty, []string{"wip.txt"}},
		{"detached HEAD", func(t *testing.T, repo string) {
			git(t, repo, "checkout", "-q", "--detach")
		}, MergeOptions{}, ErrDetachedHead, nil},
		{"merge in progress", func(t *testing.T, repo string) {
			writeFile(t, filepath.Join(repo, ".git", "MERGE_HEAD"), git(t, repo, "rev-parse", "HEAD")+"\n")
		}, MergeOptions{}, ErrInProgress, nil},
		{"rebase in progress", func(t *testing.T, repo string) {
			os.MkdirAll(filepath.Join(repo, ".git", "rebase-merge"), 0o755)
		}, MergeOptions{}, ErrInProgress, nil},
		{"conflict", conflictingUserCommit, MergeOptions{}, ErrConflict, []string{"a.txt"}},
		{"conflict, squash", conflictingUserCommit, MergeOptions{Squash: true}, ErrConflict, []string{"a.txt"}},
		{"conflict, with uncommitted", conflictingUserCommit, MergeOptions{IncludeUncommitted: true}, ErrConflict, []string{"a.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			ctx := context.Background()
			repo := newRepo(t)
			ws, c := newCopy(t, repo, "m-1")
			writeFile(t, filepath.Join(ws, "feature.txt"), "agent\n")
			writeFile(t, filepath.Join(ws, "notes.log"), "agent's log, force-added\n")
			writeFile(t, filepath.Join(ws, "pkg/x.go"), "package pkg\n")
			writeFile(t, filepath.Join(ws, "a.txt"), "one\nAGENT\nthree\n")
			git(t, ws, "add", "-A")
			git(t, ws, "add", "-f", "notes.log")
			git(t, ws, "commit", "-q", "-m", "agent")
			writeFile(t, filepath.Join(ws, "wip.txt"), "agent wip\n")
			if _, err := Import(ctx, repo, filepath.Join(harvest(t, ws, c.Branch, c.BaseCommit), BundleFile), "m-1"); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, repo)
			before := stateOf(t, repo)

			_, err := Merge(ctx, repo, "m-1", tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Merge = %v; want %v", err, tt.want)
			}
			for _, f := range tt.files {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
			var ce *ConflictError
			if errors.As(err, &ce) {
				if !slices.Equal(ce.Files, tt.files) || !strings.Contains(err.Error(), "git merge airlock/m-1") &&
					!strings.Contains(err.Error(), "git merge refs/airlock/uncommitted/m-1") {
					t.Errorf("conflict error %q / files %v", err, ce.Files)
				}
			}
			if after := stateOf(t, repo); after != before {
				t.Errorf("refused merge changed the repository:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

func conflictingUserCommit(t *testing.T, repo string) {
	writeFile(t, filepath.Join(repo, "a.txt"), "one\nUSER\nthree\n")
	git(t, repo, "commit", "-q", "-am", "user edit")
}

func TestMergeUpToDate(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	repo := newRepo(t)
	ws, c := newCopy(t, repo, "u-1")
	if _, err := Import(ctx, repo, filepath.Join(harvest(t, ws, c.Branch, c.BaseCommit), BundleFile), "u-1"); err != nil {
		t.Fatal(err)
	}
	res, err := Merge(ctx, repo, "u-1", MergeOptions{})
	if err != nil || !res.UpToDate || res.Commit != c.BaseCommit {
		t.Errorf("Merge of a run without work = %+v, %v; want up to date", res, err)
	}
	if _, err := Merge(ctx, repo, "nope-1", MergeOptions{}); !errors.Is(err, ErrNoRun) {
		t.Errorf("Merge of an unknown run = %v; want ErrNoRun", err)
	}
}
