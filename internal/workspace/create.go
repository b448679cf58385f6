package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CreateOptions says which repository to copy and where.
type CreateOptions struct {
	Repo string // any directory inside the user's work tree
	Base string // branch, tag or commit; "" means the current branch (or HEAD when detached)
	ID   string // run id; the copy's branch is airlock/<id>
	Dest string // must not exist, or be an empty directory
	// UID and GID own the copy, so the agent (running as that uid) can write
	// it. When they differ from the current process's, Create chowns the copy
	// (which needs root). Negative values leave ownership alone.
	UID, GID int
	// Uncommitted is a snapshot commit on top of Base (a run's
	// refs/airlock/uncommitted/<id>) whose changes the copy starts with,
	// uncommitted, as the earlier run left them; "" for none.
	Uncommitted string
}

// Created describes a new copy.
type Created struct {
	BaseCommit string // the commit the run starts from
	Branch     string // airlock/<id>, checked out in the copy
}

// Create makes the run's own copy of the repository at opts.Dest, on a new
// branch airlock/<id> at the base commit. It validates everything before
// making anything, and removes what it made when a later step fails.
//
// Objects are copied, never hardlinked: the agent runs with the user's uid
// and could otherwise write through a hardlink into the user's object store.
func Create(ctx context.Context, opts CreateOptions) (Created, error) {
	return create(ctx, defaultGit(), opts)
}

func create(ctx context.Context, g gitRunner, opts CreateOptions) (_ Created, err error) {
	if err := checkID(opts.ID); err != nil {
		return Created{}, err
	}
	if opts.Dest == "" {
		return Created{}, errors.New("create workspace: no destination given")
	}
	root, err := repoRoot(ctx, g, opts.Repo)
	if err != nil {
		return Created{}, err
	}
	baseCommit, err := resolveBase(ctx, g, root, opts.Base)
	if err != nil {
		return Created{}, err
	}
	if opts.Uncommitted != "" {
		if err := checkSnapshot(ctx, g, root, baseCommit, opts.Uncommitted); err != nil {
			return Created{}, err
		}
	}
	dest, err := filepath.Abs(opts.Dest)
	if err != nil {
		return Created{}, fmt.Errorf("create workspace %s: %w", opts.Dest, err)
	}
	entries, err := os.ReadDir(dest)
	existed := err == nil
	if existed && len(entries) > 0 {
		return Created{}, fmt.Errorf("create workspace %s: destination exists and is not empty", dest)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Created{}, fmt.Errorf("create workspace %s: %w", dest, err)
	}
	name, email := identity(ctx, g, root)

	defer func() {
		if err != nil {
			// Only what we made: dest was absent or empty.
			_ = removeTree(dest)
			if existed {
				_ = os.Mkdir(dest, 0o755)
			}
		}
	}()
	branch := Branch(opts.ID)
	type step struct {
		dir  string
		args []string
	}
	steps := []step{
		{root, []string{"clone", "--quiet", "--local", "--no-hardlinks", "--no-checkout", "--", root, dest}},
		{dest, []string{"remote", "remove", "origin"}},
		{dest, []string{"checkout", "--quiet", "--no-track", "-b", branch, baseCommit}},
		{dest, []string{"config", "user.name", name}},
		{dest, []string{"config", "user.email", email}},
	}
	if opts.Uncommitted != "" {
		// The snapshot's tree into the work tree, then the index back to
		// the branch head: its changes are there, uncommitted, and files it
		// added are untracked again, as the earlier run left them.
		steps = append(steps,
			step{dest, []string{"read-tree", "-m", "-u", baseCommit, opts.Uncommitted}},
			step{dest, []string{"reset", "--quiet", "--mixed"}})
	}
	for _, s := range steps {
		if _, err := g.run(ctx, s.dir, s.args...); err != nil {
			return Created{}, fmt.Errorf("create workspace %s: %w", dest, err)
		}
	}
	// The clone also made a local branch for the user's HEAD; the copy keeps
	// only the run's branch so the agent's work has one obvious place.
	out, err := g.run(ctx, dest, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
	if err != nil {
		return Created{}, fmt.Errorf("create workspace %s: %w", dest, err)
	}
	for _, b := range lines(out) {
		if b != branch {
			if _, err := g.run(ctx, dest, "branch", "--quiet", "-D", "--", b); err != nil {
				return Created{}, fmt.Errorf("create workspace %s: %w", dest, err)
			}
		}
	}
	if err := chownTree(dest, opts.UID, opts.GID); err != nil {
		return Created{}, fmt.Errorf("create workspace %s: %w", dest, err)
	}
	return Created{BaseCommit: baseCommit, Branch: branch}, nil
}

// ResolveBase returns the commit a run started from base would copy: base
// is a branch, tag or commit in the repository containing repo; "" means
// its current HEAD. The errors say what is wrong and where (ErrNoCommits,
// ErrBadBase), so callers can check a base before creating anything.
func ResolveBase(ctx context.Context, repo, base string) (string, error) {
	g := defaultGit()
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return "", err
	}
	return resolveBase(ctx, g, root, base)
}

func resolveBase(ctx context.Context, g gitRunner, root, base string) (string, error) {
	if base == "" {
		base = "HEAD"
	}
	commit, err := resolveCommit(ctx, g, root, base)
	if err != nil {
		return "", fmt.Errorf("resolve base %q in %s: %w", base, root, err)
	}
	if commit != "" {
		return commit, nil
	}
	// A repository without commits has an unborn current branch: its name
	// resolves to nothing, and that is the problem to report.
	if head, herr := resolveCommit(ctx, g, root, "HEAD"); herr == nil && head == "" {
		return "", fmt.Errorf("%s: %w: make a first commit before running an agent", root, ErrNoCommits)
	}
	return "", fmt.Errorf("%w: %q is not a branch, tag or commit in %s", ErrBadBase, base, root)
}

// checkSnapshot insists that snap is a commit whose parent is base, as the
// harvest makes them: anything else would not be "the changes left on top
// of base".
func checkSnapshot(ctx context.Context, g gitRunner, root, base, snap string) error {
	if !hexSHA.MatchString(snap) {
		return fmt.Errorf("%w: uncommitted snapshot %q is not a commit id", ErrBadBase, snap)
	}
	parent, err := resolveCommit(ctx, g, root, snap+"^1")
	if err != nil || parent != base {
		return fmt.Errorf("%w: uncommitted snapshot %s is not a commit on top of %s in %s", ErrBadBase, snap, base, root)
	}
	return nil
}

// identity is the user's git identity, so the agent's commits look like the
// user's own work done by a tool, with a recognisable fallback.
func identity(ctx context.Context, g gitRunner, repo string) (name, email string) {
	name, _ = g.line(ctx, repo, "config", "user.name")
	email, _ = g.line(ctx, repo, "config", "user.email")
	if name == "" {
		name = "airlock agent"
	}
	if email == "" {
		email = "agent@airlock.invalid"
	}
	return name, email
}

func chownTree(root string, uid, gid int) error {
	if uid < 0 && gid < 0 {
		return nil
	}
	if uid == os.Geteuid() && gid == os.Getegid() {
		return nil
	}
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// removeTree deletes a copy. The agent may have left directories without
// write or search permission, which os.RemoveAll cannot descend when we are
// not root, so those are opened up and the removal retried. WalkDir does not
// follow symlinks and only real directories are chmodded.
func removeTree(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, _ error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(path, 0o700) // before WalkDir reads it
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// RestoreIdentity gives a run's copy back the commit identity Create set
// (the user's, from repo), in a copy whose git configuration was replaced
// by a minimal one on its way home from a sandbox (archive.Extract): a
// persistent run's next leg starts from that copy on an engine whose
// mounts are copies. Only a real .git directory holding a regular config
// file (the host's minimal one) is written to; git reads nothing else of
// the copy.
func RestoreIdentity(ctx context.Context, repo, dest string) error {
	g := defaultGit()
	cfg := filepath.Join(dest, ".git", "config")
	if fi, err := os.Lstat(filepath.Join(dest, ".git")); err != nil || !fi.IsDir() {
		return nil
	}
	if fi, err := os.Lstat(cfg); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	name, email := identity(ctx, g, repo)
	for _, kv := range [][2]string{{"user.name", name}, {"user.email", email}} {
		if _, err := g.run(ctx, repo, "config", "--file", cfg, kv[0], kv[1]); err != nil {
			return fmt.Errorf("restore the commit identity of %s: %w", dest, err)
		}
	}
	return nil
}
