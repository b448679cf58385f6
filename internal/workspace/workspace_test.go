package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestCreate(t *testing.T) {
	isolate(t)
	repo := newRepo(t)
	// A repository of ordinary size: 2000 files, 20 commits.
	for c := 0; c < 20; c++ {
		for f := 0; f < 100; f++ {
			writeFile(t, filepath.Join(repo, "src", fmt.Sprintf("d%02d", c), fmt.Sprintf("f%03d.txt", f)),
				strings.Repeat(fmt.Sprintf("line %d %d\n", c, f), 50))
		}
		git(t, repo, "add", "-A")
		git(t, repo, "commit", "-q", "-m", fmt.Sprintf("commit %d", c))
	}
	git(t, repo, "gc", "-q")
	git(t, repo, "branch", "feature", "HEAD~5")
	git(t, repo, "remote", "add", "upstream", "https://example.invalid/repo.git")
	userHead := git(t, repo, "rev-parse", "HEAD")

	dest := filepath.Join(t.TempDir(), "ws")
	// Its speed is measured by the benchmarks (make bench), not here.
	c, err := Create(context.Background(), CreateOptions{Repo: filepath.Join(repo, "lib"), ID: "task-0123abcd", Dest: dest, UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if c.BaseCommit != userHead || c.Branch != "airlock/task-0123abcd" {
		t.Errorf("Created = %+v; want base %s, branch airlock/task-0123abcd", c, userHead)
	}
	if got := git(t, dest, "symbolic-ref", "--short", "HEAD"); got != c.Branch {
		t.Errorf("copy is on %q, want %q", got, c.Branch)
	}
	if got := git(t, dest, "rev-parse", "HEAD"); got != userHead {
		t.Errorf("copy HEAD %s, want %s", got, userHead)
	}
	if got := git(t, dest, "status", "--porcelain"); got != "" {
		t.Errorf("copy work tree not clean:\n%s", got)
	}
	if got := git(t, dest, "remote"); got != "" {
		t.Errorf("copy has remotes %q; want none (they name host paths)", got)
	}
	if got := git(t, dest, "branch", "--format=%(refname:short)"); got != c.Branch {
		t.Errorf("copy branches %q; want only %s", got, c.Branch)
	}
	if got := git(t, dest, "config", "user.name") + " " + git(t, dest, "config", "user.email"); got != "Test User user@example.test" {
		t.Errorf("copy identity %q", got)
	}
	// No object file may be shared with the user's store.
	err = filepath.WalkDir(filepath.Join(dest, ".git", "objects"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if n := fi.Sys().(*syscall.Stat_t).Nlink; n != 1 {
			t.Errorf("%s has %d links; objects must be copied", p, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// An explicit base.
	c2, err := Create(context.Background(), CreateOptions{Repo: repo, Base: "feature", ID: "x-1", Dest: filepath.Join(t.TempDir(), "ws"), UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if want := git(t, repo, "rev-parse", "feature"); c2.BaseCommit != want {
		t.Errorf("base feature: got %s want %s", c2.BaseCommit, want)
	}
}

func TestCreateChownsForTheAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	isolate(t)
	repo := newRepo(t)
	dest := filepath.Join(t.TempDir(), "ws")
	if _, err := Create(context.Background(), CreateOptions{Repo: repo, ID: "own-1", Dest: dest, UID: 1000, GID: 1000}); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := os.Lstat(p)
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
			return fmt.Errorf("%s owned by %d:%d", p, st.Uid, st.Gid)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func TestCreateRefuses(t *testing.T) {
	isolate(t)
	repo := newRepo(t)
	empty := filepath.Join(t.TempDir(), "empty")
	git(t, t.TempDir(), "init", "-q", empty)
	bare := filepath.Join(t.TempDir(), "bare.git")
	git(t, t.TempDir(), "init", "-q", "--bare", bare)
	full := t.TempDir()
	writeFile(t, filepath.Join(full, "x"), "x")

	tests := []struct {
		name string
		opts CreateOptions
		want error
	}{
		{"not a repository", CreateOptions{Repo: t.TempDir(), ID: "a-1"}, ErrNotRepo},
		{"bare", CreateOptions{Repo: bare, ID: "a-1"}, ErrBare},
		{"no commits", CreateOptions{Repo: empty, ID: "a-1"}, ErrNoCommits},
		{"no commits, current branch named", CreateOptions{Repo: empty, Base: "master", ID: "a-1"}, ErrNoCommits},
		{"snapshot not on base", CreateOptions{Repo: repo, Base: "HEAD~1", Uncommitted: strings.Repeat("0", 40), ID: "a-1"}, ErrBadBase},
		{"unknown base", CreateOptions{Repo: repo, Base: "nope", ID: "a-1"}, ErrBadBase},
		{"option-like base", CreateOptions{Repo: repo, Base: "--all", ID: "a-1"}, ErrBadBase},
		{"bad id", CreateOptions{Repo: repo, ID: "../x"}, ErrBadID},
		{"dest not empty", CreateOptions{Repo: repo, ID: "a-1", Dest: full}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Dest == "" {
				tt.opts.Dest = filepath.Join(t.TempDir(), "ws")
			}
			tt.opts.UID, tt.opts.GID = -1, -1
			_, err := Create(context.Background(), tt.opts)
			if err == nil {
				t.Fatal("Create succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v; want %v", err, tt.want)
			}
			if tt.opts.Dest == full {
				if got := markersOrNil(full); !slices.Equal(got, []string{"x"}) {
					t.Errorf("dest changed: %v", got)
				}
			} else if _, err := os.Stat(tt.opts.Dest); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dest %s was created", tt.opts.Dest)
			}
		})
	}
}

// A copy made from an earlier run's head and snapshot starts where that
// run stopped: its commits, and its uncommitted changes still uncommitted
// (a change, a new untracked file, a deletion).
func TestCreateContinuesFromSnapshot(t *testing.T) {
	isolate(t)
	repo := newRepo(t)
	ws, c := newCopy(t, repo, "first-1")
	writeFile(t, filepath.Join(ws, "done.txt"), "committed\n")
	git(t, ws, "add", "done.txt")
	git(t, ws, "commit", "-q", "-m", "agent commit")
	writeFile(t, filepath.Join(ws, "a.txt"), "one\nTWO\nthree\n")
	writeFile(t, filepath.Join(ws, "draft.txt"), "not yet\n")
	if err := os.Remove(filepath.Join(ws, "lib", "util.go")); err != nil {
		t.Fatal(err)
	}
	imp, err := Import(context.Background(), repo, filepath.Join(harvest(t, ws, c.Branch, c.BaseCommit), BundleFile), "first-1")
	if err != nil || imp.Uncommitted == "" {
		t.Fatalf("import: %+v, %v", imp, err)
	}

	dest := filepath.Join(t.TempDir(), "second")
	got, err := Create(context.Background(), CreateOptions{Repo: repo, Base: imp.Head, Uncommitted: imp.Uncommitted, ID: "second-1", Dest: dest, UID: -1, GID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got.BaseCommit != imp.Head || git(t, dest, "rev-parse", "HEAD") != imp.Head {
		t.Errorf("second copy at %s (base %s), want the first run's head %s", git(t, dest, "rev-parse", "HEAD"), got.BaseCommit, imp.Head)
	}
	for file, want := range map[string]string{"done.txt": "committed\n", "a.txt": "one\nTWO\nthree\n", "draft.txt": "not yet\n"} {
		if b := readFile(t, filepath.Join(dest, file)); b != want {
			t.Errorf("%s = %q, want %q", file, b, want)
		}
	}
	status := git(t, dest, "status", "--porcelain")
	if want := "M a.txt\n D lib/util.go\n?? draft.txt"; status != want { // git() trims the first space
		t.Errorf("git status in the second copy:\n%s\nwant\n%s", status, want)
	}
}

func TestResolveBase(t *testing.T) {
	isolate(t)
	repo := newRepo(t)
	empty := filepath.Join(t.TempDir(), "empty")
	git(t, t.TempDir(), "init", "-q", "-b", "main", empty)
	head := git(t, repo, "rev-parse", "HEAD")
	if got, err := ResolveBase(context.Background(), filepath.Join(repo, "lib"), ""); err != nil || got != head {
		t.Errorf("ResolveBase(\"\") = %s, %v; want %s", got, err, head)
	}
	if _, err := ResolveBase(context.Background(), repo, "no-such-branch"); !errors.Is(err, ErrBadBase) || !strings.Contains(err.Error(), `"no-such-branch" is not a branch, tag or commit in `+repo) {
		t.Errorf("unknown branch: %v", err)
	}
	if _, err := ResolveBase(context.Background(), empty, "main"); !errors.Is(err, ErrNoCommits) || !strings.Contains(err.Error(), "make a first commit") {
		t.Errorf("repository without commits: %v", err)
	}
}

func markersOrNil(dir string) []string {
	es, _ := os.ReadDir(dir)
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	return n
}

func TestCopyIsIndependentUntilImport(t *testing.T) {
	isolate(t)
	repo := newRepo(t)
	ws, c := newCopy(t, repo, "ind-1")
	writeFile(t, filepath.Join(ws, "new.txt"), "agent work\n")
	git(t, ws, "add", "new.txt")
	git(t, ws, "commit", "-q", "-m", "agent commit")
	agentHead := git(t, ws, "rev-parse", "HEAD")

	if err := exec.Command("git", "-C", repo, "cat-file", "-e", agentHead).Run(); err == nil {
		t.Fatal("the agent's commit is in the user's repository before Import")
	}
	if _, err := os.Stat(filepath.Join(repo, "new.txt")); err == nil {
		t.Fatal("the agent's file is in the user's work tree")
	}
	out := harvest(t, ws, c.Branch, c.BaseCommit)
	imp, err := Import(context.Background(), repo, filepath.Join(out, BundleFile), "ind-1")
	if err != nil {
		t.Fatal(err)
	}
	if imp.Head != agentHead || git(t, repo, "rev-parse", "airlock/ind-1") != agentHead {
		t.Errorf("imported head %s; want %s", imp.Head, agentHead)
	}
	if imp.Uncommitted != "" {
		t.Errorf("clean copy produced a snapshot %s", imp.Uncommitted)
	}
	if got := git(t, repo, "symbolic-ref", "--short", "HEAD"); got != "main" {
		t.Errorf("user's branch changed to %s", got)
	}
}

// TestHostileCopyIsArmed proves the hostile setup really fires when git
// runs in the copy the ordinary way, so the absence of markers elsewhere
// means something.
func TestHostileCopyIsArmed(t *testing.T) {
	isolate(t)
	repo := newRepo(t)
	ws, _ := newCopy(t, repo, "armed-1")
	m := t.TempDir()
	makeHostile(t, ws, m)
	// A process filter that does not speak the protocol makes git die
	// before later commands get a chance; the clean filter shows the same.
	git(t, ws, "config", "--unset", "filter.evil.process")
	writeFile(t, filepath.Join(ws, "a.txt"), "changed\n")
	cmd := exec.Command("sh", "-c", "git status >/dev/null 2>&1; git diff >/dev/null 2>&1; git add -A >/dev/null 2>&1; git commit -q --allow-empty -m x; true")
	cmd.Dir = ws
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	got := markers(t, m)
	for _, want := range []string{"copy-fsmonitor", "copyhookspath-hook-pre-commit", "copy-filterclean", "copy-diffcommand"} {
		if !slices.Contains(got, want) {
			t.Errorf("marker %s did not appear (got %v): the hostile setup is not armed", want, got)
		}
	}
}

// agentWork commits on the copy's branch and leaves uncommitted changes:
// a modified tracked file, an untracked file and an ignored file.
func agentWork(t *testing.T, ws string) (head string) {
	t.Helper()
	writeFile(t, filepath.Join(ws, "feature.txt"), "agent feature\n")
	writeFile(t, filepath.Join(ws, ".gitattributes"), "* filter=evil diff=evil merge=evil\n")
	git(t, ws, "add", "-A")
	git(t, ws, "commit", "-q", "-m", "agent: add feature")
	writeFile(t, filepath.Join(ws, "lib/util.go"), "package lib\n\nfunc F() {}\n")
	git(t, ws, "commit", "-q", "-am", "agent: add F")
	head = git(t, ws, "rev-parse", "HEAD")
	writeFile(t, filepath.Join(ws, "README.md"), "# project\n\nuncommitted edit\n")
	writeFile(t, filepath.Join(ws, "notes/todo.txt"), "untracked note\n")
	writeFile(t, filepath.Join(ws, "debug.log"), "ignored\n")
	return head
}

func TestHarvestImportMergeRemoveOnHostileCopy(t *testing.T) {
	tests := []struct {
		name      string
		opts      MergeOptions
		userMoves bool // the user commits on main meanwhile
		wantFF    bool
		parents   int
	}{
		{"fast-forward", MergeOptions{}, false, true, 1},
		{"merge commit", MergeOptions{}, true, false, 2},
		{"squash", MergeOptions{Squash: true}, true, false, 1},
		{"include uncommitted", MergeOptions{IncludeUncommitted: true}, false, true, 1},
		{"include uncommitted, squash", MergeOptions{IncludeUncommitted: true, Squash: true}, true, false, 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			ctx := context.Background()
			id := fmt.Sprintf("run-%08x", i)
			repo := newRepo(t)
			ws, c := newCopy(t, repo, id)
			head := agentWork(t, ws)
			m := t.TempDir()
			makeHostile(t, ws, m)
			if tt.userMoves {
				writeFile(t, filepath.Join(repo, "user.txt"), "user work\n")
				git(t, repo, "add", "user.txt")
				git(t, repo, "commit", "-q", "-m", "user work")
			}
			// The user's own hooks must not run on the agent's work either.
			plantHooks(t, filepath.Join(repo, ".git", "hooks"), "user", m)

			out := harvest(t, ws, c.Branch, c.BaseCommit)
			h, err := ReadHarvest(out)
			if err != nil {
				t.Fatal(err)
			}
			if h.Head != head || h.Uncommitted == "" || h.Error != "" {
				t.Fatalf("harvest = %+v; want head %s and a snapshot", h, head)
			}

			imp, err := Import(ctx, repo, filepath.Join(out, BundleFile), id)
			if err != nil {
				t.Fatal(err)
			}
			if imp.Head != head || imp.Uncommitted != h.Uncommitted {
				t.Fatalf("Import = %+v; harvest said %+v", imp, h)
			}
			snapFiles := git(t, repo, "ls-tree", "-r", "--name-only", imp.Uncommitted)
			if !strings.Contains(snapFiles, "notes/todo.txt") || strings.Contains(snapFiles, "debug.log") {
				t.Errorf("snapshot files:\n%s\nwant notes/todo.txt and no ignored debug.log", snapFiles)
			}

			var diff bytes.Buffer
			if err := Diff(ctx, repo, c.BaseCommit, id, DiffOptions{}, &diff); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"+agent feature", "+func F() {}", UncommittedHeader, "+uncommitted edit", "+untracked note"} {
				if !strings.Contains(diff.String(), want) {
					t.Errorf("diff lacks %q:\n%s", want, diff.String())
				}
			}
			if strings.Contains(diff.String(), "user work") || strings.Contains(diff.String(), "debug.log") {
				t.Errorf("diff shows things that are not the agent's work:\n%s", diff.String())
			}
			diff.Reset()
			if err := Diff(ctx, repo, c.BaseCommit, id, DiffOptions{Stat: true}, &diff); err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`feature\.txt +\| 1 \+`).MatchString(diff.String()) {
				t.Errorf("stat diff:\n%s", diff.String())
			}

			userHead := git(t, repo, "rev-parse", "HEAD")
			res, err := Merge(ctx, repo, id, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Into != "main" || res.FastForward != (tt.wantFF && !tt.opts.Squash) || res.Squashed != tt.opts.Squash ||
				res.IncludedUncommitted != tt.opts.IncludeUncommitted {
				t.Errorf("MergeResult = %+v", res)
			}
			newHead := git(t, repo, "rev-parse", "HEAD")
			if res.Commit != newHead {
				t.Errorf("result commit %s, HEAD %s", res.Commit, newHead)
			}
			if got := len(strings.Fields(git(t, repo, "rev-list", "--parents", "-n1", "HEAD"))) - 1; got != tt.parents {
				t.Errorf("HEAD has %d parents, want %d", got, tt.parents)
			}
			if git(t, repo, "rev-parse", "HEAD~1") != userHead && !res.FastForward {
				t.Errorf("first parent is not the user's previous head")
			}
			if tt.opts.Squash {
				if msg := git(t, repo, "log", "-1", "--format=%B"); !strings.Contains(msg, "Squashed airlock run "+id) || !strings.Contains(msg, "* agent: add F") {
					t.Errorf("squash message:\n%s", msg)
				}
			}
			if !tt.wantFF && !tt.opts.Squash {
				if msg := git(t, repo, "log", "-1", "--format=%s"); msg != "Merge airlock run "+id {
					t.Errorf("merge message %q", msg)
				}
			}
			if got := readFile(t, filepath.Join(repo, "feature.txt")); got != "agent feature\n" {
				t.Errorf("feature.txt = %q", got)
			}
			_, err = os.Stat(filepath.Join(repo, "notes/todo.txt"))
			if tt.opts.IncludeUncommitted != (err == nil) {
				t.Errorf("notes/todo.txt present=%v; IncludeUncommitted=%v", err == nil, tt.opts.IncludeUncommitted)
			}
			if st := git(t, repo, "status", "--porcelain"); st != "" {
				t.Errorf("user's tree not clean after merge:\n%s", st)
			}

			// Merged work is not reported; a snapshot left unmerged is.
			left, err := Unmerged(ctx, repo, id)
			if err != nil {
				t.Fatal(err)
			}
			if tt.opts.IncludeUncommitted {
				if len(left) != 0 {
					t.Errorf("Unmerged after merging everything = %v", left)
				}
			} else {
				if len(left) != 1 || !strings.Contains(left[0], "uncommitted changes left by the agent") {
					t.Errorf("Unmerged = %v; want just the snapshot", left)
				}
				err := Remove(ctx, repo, id, ws, false)
				if !errors.Is(err, ErrUnmerged) {
					t.Fatalf("Remove without force = %v; want ErrUnmerged", err)
				}
				if _, err := os.Stat(ws); err != nil {
					t.Errorf("refused Remove deleted the copy: %v", err)
				}
			}
			if err := Remove(ctx, repo, id, ws, !tt.opts.IncludeUncommitted); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(ws); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("copy still exists")
			}
			if refs := git(t, repo, "for-each-ref", "refs/airlock/", "refs/heads/airlock/"); refs != "" {
				t.Errorf("refs left behind:\n%s", refs)
			}
			if got := markers(t, m); len(got) != 0 {
				t.Errorf("hostile commands ran: %v", got)
			}
		})
	}
}

func TestUnmergedAndRemoveRefusal(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	repo := newRepo(t)
	ws, c := newCopy(t, repo, "rm-1")
	writeFile(t, filepath.Join(ws, "x.txt"), "x\n")
	git(t, ws, "add", "x.txt")
	git(t, ws, "commit", "-q", "-m", "agent x")
	if _, err := Import(ctx, repo, filepath.Join(harvest(t, ws, c.Branch, c.BaseCommit), BundleFile), "rm-1"); err != nil {
		t.Fatal(err)
	}
	left, err := Unmerged(ctx, repo, "rm-1")
	if err != nil || len(left) != 1 || !strings.HasSuffix(left[0], " agent x") {
		t.Fatalf("Unmerged = %v, %v", left, err)
	}
	err = Remove(ctx, repo, "rm-1", ws, false)
	var ue *UnmergedError
	if !errors.As(err, &ue) || len(ue.Commits) != 1 {
		t.Fatalf("Remove = %v; want *UnmergedError with 1 commit", err)
	}
	if _, err := os.Stat(ws); err != nil || git(t, repo, "rev-parse", "--verify", "-q", "airlock/rm-1") == "" {
		t.Fatal("refused Remove deleted something")
	}
	// A tag elsewhere counts as merged; so does the user's own branch.
	git(t, repo, "tag", "keep", "airlock/rm-1")
	if left, err := Unmerged(ctx, repo, "rm-1"); err != nil || len(left) != 0 {
		t.Errorf("Unmerged with a tag = %v, %v", left, err)
	}
	git(t, repo, "tag", "-d", "keep")
	// Another run's branch does not count.
	git(t, repo, "branch", "airlock/other-1", "airlock/rm-1")
	if left, _ := Unmerged(ctx, repo, "rm-1"); len(left) != 1 {
		t.Errorf("another airlock branch counted as merged: %v", left)
	}
	// The copy may be left unwritable by the agent; Remove still deletes it.
	if err := os.Chmod(filepath.Join(ws, "lib"), 0o000); err != nil {
		t.Fatal(err)
	}
	if err := Remove(ctx, repo, "rm-1", ws, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ws); !errors.Is(err, os.ErrNotExist) {
		t.Error("copy still exists after forced Remove")
	}
	if out := git(t, repo, "branch", "--list", "airlock/rm-1"); out != "" {
		t.Errorf("branch left: %s", out)
	}
	// Removing again is fine.
	if err := Remove(ctx, repo, "rm-1", ws, false); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestDestroyedCopy(t *testing.T) {
	tests := []struct {
		name    string
		destroy []string // sh commands run in the copy
	}{
		{"git dir removed", []string{"rm -rf .git"}},
		{"branch deleted", []string{"git update-ref -d refs/heads/airlock/gone-1"}},
		{"branch deleted and pruned", []string{"git checkout -q --detach", "git update-ref -d refs/heads/airlock/gone-1", "git reflog expire --expire=now --all", "git gc -q --prune=now"}},
		{"copy removed", []string{"cd .. && rm -rf workspace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			repo := newRepo(t)
			ws, c := newCopy(t, repo, "gone-1")
			before := treeHash(t, repo)
			writeFile(t, filepath.Join(ws, "w.txt"), "work\n")
			git(t, ws, "add", "w.txt")
			git(t, ws, "commit", "-q", "-m", "work")
			for _, s := range tt.destroy {
				cmd := exec.Command("sh", "-c", s)
				cmd.Dir = ws
				if b, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", s, err, b)
				}
			}
			out := harvest(t, ws, c.Branch, c.BaseCommit)
			h, err := ReadHarvest(out)
			if err != nil {
				t.Fatal(err)
			}
			if !h.Lost() || !strings.Contains(h.Error, "unaffected") {
				t.Errorf("harvest = %+v; want lost with an explanation", h)
			}
			if _, err := os.Stat(filepath.Join(out, BundleFile)); err == nil {
				t.Error("a bundle was written for a destroyed copy")
			}
			if _, err := Import(context.Background(), repo, filepath.Join(out, BundleFile), "gone-1"); err == nil {
				t.Error("Import of a missing bundle succeeded")
			}
			if after := treeHash(t, repo); after != before {
				t.Error("the user's repository changed")
			}
		})
	}
}

func TestImportRejectsForeignBundles(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	repo := newRepo(t)
	ws, c := newCopy(t, repo, "bad-1")
	writeFile(t, filepath.Join(ws, "x.txt"), "x\n")
	git(t, ws, "add", "x.txt")
	git(t, ws, "commit", "-q", "-m", "x")
	git(t, ws, "branch", "main")
	git(t, ws, "tag", "v9")
	dir := t.TempDir()
	git(t, ws, "bundle", "create", "-q", filepath.Join(dir, "extra.bundle"), c.Branch, "main")
	git(t, ws, "bundle", "create", "-q", filepath.Join(dir, "tag.bundle"), c.Branch, "refs/tags/v9")
	git(t, ws, "bundle", "create", "-q", filepath.Join(dir, "other.bundle"), "main")
	if err := os.Symlink(filepath.Join(repo, ".git", "config"), filepath.Join(dir, "link.bundle")); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, repo)
	for _, name := range []string{"extra", "tag", "other", "link"} {
		t.Run(name, func(t *testing.T) {
			_, err := Import(ctx, repo, filepath.Join(dir, name+".bundle"), "bad-1")
			if err == nil {
				t.Fatal("Import accepted it")
			}
			if name != "link" && !errors.Is(err, ErrBadBundle) {
				t.Errorf("err = %v; want ErrBadBundle", err)
			}
		})
	}
	// The lock file may appear; nothing else may change.
	os.Remove(filepath.Join(repo, ".git", "airlock.lock"))
	if treeHash(t, repo) != before {
		t.Error("a rejected bundle changed the repository")
	}
}

func TestConcurrentImports(t *testing.T) {
	isolate(t)
	repo := newRepo(t)
	const n = 8
	bundles := make([]string, n)
	heads := make([]string, n)
	for i := range n {
		id := fmt.Sprintf("par-%d", i)
		ws, c := newCopy(t, repo, id)
		writeFile(t, filepath.Join(ws, id+".txt"), id)
		git(t, ws, "add", "-A")
		git(t, ws, "commit", "-q", "-m", id)
		heads[i] = git(t, ws, "rev-parse", "HEAD")
		bundles[i] = filepath.Join(harvest(t, ws, c.Branch, c.BaseCommit), BundleFile)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Import(context.Background(), repo, bundles[i], fmt.Sprintf("par-%d", i))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("import %d: %v", i, errs[i])
		} else if got := git(t, repo, "rev-parse", fmt.Sprintf("airlock/par-%d", i)); got != heads[i] {
			t.Errorf("airlock/par-%d = %s want %s", i, got, heads[i])
		}
	}
}
