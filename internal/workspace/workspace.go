// Package workspace manages a run's own copy of the user's repository and
// brings the agent's work back into the user's repository.
//
// The copy is trusted only until the agent starts. After that its .git/config
// and hooks may be hostile (core.fsmonitor, diff.external, filter drivers,
// hooks...), so the host never runs git, or anything else, inside it again:
// the work leaves the copy as a git bundle made inside a sandbox container
// (HarvestScript), and everything after that (Import, Diff, Merge, Unmerged,
// Remove) runs in the user's own repository with its hooks disabled.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Errors the CLI can tell apart with errors.Is. Most come wrapped in a typed
// error that carries the details (files, commits).
var (
	ErrNotRepo      = errors.New("not a git repository")
	ErrBare         = errors.New("bare repository")
	ErrNoCommits    = errors.New("repository has no commits")
	ErrBadBase      = errors.New("base not found")
	ErrBadID        = errors.New("invalid run id")
	ErrNoRun        = errors.New("no imported branch for this run")
	ErrBadBundle    = errors.New("unexpected bundle")
	ErrDirty        = errors.New("uncommitted changes in the way")
	ErrDetachedHead = errors.New("HEAD is detached")
	ErrInProgress   = errors.New("an operation is in progress")
	ErrConflict     = errors.New("merge conflict")
	ErrUnmerged     = errors.New("run has unmerged work")
	ErrCheckedOut   = errors.New("run branch is checked out")
)

// BranchPrefix namespaces every branch airlock creates in the user's repo.
const BranchPrefix = "airlock/"

// snapshotRef is where the harvest script leaves the snapshot of the
// agent's uncommitted changes in the copy (and thus in the bundle).
const snapshotRef = "refs/airlock/uncommitted"

// Branch returns the run's branch name, "airlock/<id>".
func Branch(id string) string { return BranchPrefix + id }

func branchRef(id string) string      { return "refs/heads/" + Branch(id) }
func snapshotRefFor(id string) string { return snapshotRef + "/" + id }

// validID keeps ids usable verbatim in ref names, shell scripts and paths.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]*$`)

func checkID(id string) error {
	if !validID.MatchString(id) || len(id) > 100 {
		return fmt.Errorf("%w %q: use letters, digits, '-' and '_'", ErrBadID, id)
	}
	return nil
}

var hexSHA = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// RepoRoot returns the top of the work tree containing dir.
func RepoRoot(ctx context.Context, dir string) (string, error) {
	return repoRoot(ctx, defaultGit(), dir)
}

func repoRoot(ctx context.Context, g gitRunner, dir string) (string, error) {
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("repository %s: %w", dir, err)
	}
	// One git for the usual case, a work tree; the two steps below tell
	// a bare repository from no repository when it is not.
	if out, err := g.run(ctx, dir, "rev-parse", "--is-bare-repository", "--show-toplevel"); err == nil {
		if l := lines(out); len(l) == 2 && l[0] == "false" && l[1] != "" {
			return l[1], nil
		}
	}
	bare, err := g.line(ctx, dir, "rev-parse", "--is-bare-repository")
	if err != nil {
		return "", fmt.Errorf("%s: %w (run airlock inside a git work tree)", dir, ErrNotRepo)
	}
	if bare == "true" {
		return "", fmt.Errorf("%s: %w: airlock needs a work tree", dir, ErrBare)
	}
	top, err := g.line(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil || top == "" {
		return "", fmt.Errorf("%s: %w (run airlock inside a git work tree)", dir, ErrNotRepo)
	}
	return top, nil
}

// CurrentBranch returns the short name of the branch checked out in repo, or
// an error wrapping ErrDetachedHead.
func CurrentBranch(ctx context.Context, repo string) (string, error) {
	return currentBranch(ctx, defaultGit(), repo)
}

func currentBranch(ctx context.Context, g gitRunner, repo string) (string, error) {
	ref, err := g.line(ctx, repo, "symbolic-ref", "-q", "HEAD")
	if err != nil || !strings.HasPrefix(ref, "refs/heads/") {
		if exitCode(err) == 1 || (err == nil && ref != "") {
			return "", fmt.Errorf("%s: %w: check out a branch first", repo, ErrDetachedHead)
		}
		return "", fmt.Errorf("current branch of %s: %w", repo, err)
	}
	return strings.TrimPrefix(ref, "refs/heads/"), nil
}

// resolveCommit returns the commit name points to, or "" when it does not
// exist.
func resolveCommit(ctx context.Context, g gitRunner, repo, name string) (string, error) {
	sha, err := g.line(ctx, repo, "rev-parse", "--verify", "-q", "--end-of-options", name+"^{commit}")
	if exitCode(err) == 1 {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return sha, nil
}

// lockRepo serialises airlock's ref writes to one repository: many runs may
// finish at once. The lock lives in the common git dir so linked worktrees
// share it.
func lockRepo(ctx context.Context, g gitRunner, repo string) (unlock func(), err error) {
	dir, err := g.line(ctx, repo, "rev-parse", "--path-format=absolute", "--git-common-dir")
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", repo, err)
	}
	// The lock is taken on the git directory itself: a lock file would be
	// one more thing airlock leaves in the user's repository.
	path := dir
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", repo, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
