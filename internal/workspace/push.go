package workspace

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrNoRemote is returned (wrapped) for a remote the repository does not have.
var ErrNoRemote = errors.New("no such remote")

// ErrRejected is returned (wrapped) when the remote refuses the push.
var ErrRejected = errors.New("the remote refused the push")

// PushOptions say where a run's branch goes.
type PushOptions struct {
	Remote string // a configured remote's name; "" is "origin"
	Branch string // the branch on the remote; "" is the run's own, airlock/<id>
}

// PushResult says what Push did.
type PushResult struct {
	Remote   string // the remote's name
	URL      string // its URL as configured (remote.<name>.url), without a password
	Branch   string // the branch on the remote
	Commit   string // the commit the branch is at there now
	Created  bool   // the branch is new on the remote
	UpToDate bool   // it was already there at Commit: nothing was sent
}

// RemoteURL returns remote's URL as configured (remote.<name>.url, before
// any url.*.insteadOf), or an error wrapping ErrNoRemote that lists the
// repository's remotes.
func RemoteURL(ctx context.Context, repo, remote string) (string, error) {
	g := defaultGit()
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return "", err
	}
	return remoteURL(ctx, g, root, remote)
}

func remoteURL(ctx context.Context, g gitRunner, root, remote string) (string, error) {
	if remote == "" || strings.HasPrefix(remote, "-") || strings.ContainsAny(remote, " \t\n/\\:") {
		return "", fmt.Errorf("%w %q: give the name of one of the repository's remotes, such as origin", ErrNoRemote, remote)
	}
	out, err := g.run(ctx, root, "remote")
	if err != nil {
		return "", fmt.Errorf("list the remotes of %s: %w", root, err)
	}
	names := lines(out)
	found := false
	for _, n := range names {
		found = found || n == remote
	}
	if !found {
		have := "it has none"
		if len(names) > 0 {
			have = "it has " + strings.Join(names, ", ")
		}
		return "", fmt.Errorf("%w %q in %s (%s); add one with git remote add %s URL", ErrNoRemote, remote, root, have, remote)
	}
	u, err := g.line(ctx, root, "config", "--get", "remote."+remote+".url")
	if err != nil || u == "" {
		return "", fmt.Errorf("%w %q in %s: it has no url (git remote set-url %s URL)", ErrNoRemote, remote, root, remote)
	}
	return u, nil
}

// Push pushes the run's branch from the user's repository to a remote,
// under opts.Branch: never forced (a remote branch that has moved on is
// ErrRejected, and stays as it was), without tags or submodules, and with
// no hook running (the user's pre-push hook would run on the agent's
// work). Pushing a branch that is already there is no error.
func Push(ctx context.Context, repo, id string, opts PushOptions) (PushResult, error) {
	return push(ctx, defaultGit(), repo, id, opts)
}

func push(ctx context.Context, g gitRunner, repo, id string, opts PushOptions) (PushResult, error) {
	if err := checkID(id); err != nil {
		return PushResult{}, err
	}
	if opts.Remote == "" {
		opts.Remote = "origin"
	}
	if opts.Branch == "" {
		opts.Branch = Branch(id)
	}
	res := PushResult{Remote: opts.Remote, Branch: opts.Branch}
	root, err := repoRoot(ctx, g, repo)
	if err != nil {
		return res, err
	}
	if strings.HasPrefix(opts.Branch, "-") || strings.HasPrefix(opts.Branch, "refs/") {
		return res, fmt.Errorf("push run %s: --branch %q: give a branch name, such as %s", id, opts.Branch, Branch(id))
	}
	if _, err := g.run(ctx, root, "check-ref-format", "refs/heads/"+opts.Branch); err != nil {
		return res, fmt.Errorf("push run %s: --branch %q is not a valid branch name", id, opts.Branch)
	}
	raw, err := remoteURL(ctx, g, root, opts.Remote)
	if err != nil {
		return res, fmt.Errorf("push run %s: %w", id, err)
	}
	res.URL = redactURL(raw)
	sha, err := resolveCommit(ctx, g, root, branchRef(id))
	if err != nil {
		return res, fmt.Errorf("push run %s: %w", id, err)
	}
	if sha == "" {
		return res, fmt.Errorf("push run %s: %w: %s does not exist in %s", id, ErrNoRun, Branch(id), root)
	}
	res.Commit = sha
	refspec := branchRef(id) + ":refs/heads/" + opts.Branch
	out, err := g.run(ctx, root, "push", "--porcelain", "--no-follow-tags", "--recurse-submodules=no", "--no-signed",
		"--", opts.Remote, refspec)
	flag, summary := pushStatus(out, refspec)
	switch {
	case flag == "!":
		return res, fmt.Errorf("push run %s: %w: %s (%s) did not take %s as %s: %s; nothing there was changed (airlock never force-pushes): push under another name with --branch",
			id, ErrRejected, opts.Remote, res.URL, Branch(id), opts.Branch, summary)
	case err != nil:
		return res, fmt.Errorf("push run %s to %s (%s): %w", id, opts.Remote, res.URL, err)
	}
	res.Created = flag == "*"
	res.UpToDate = flag == "="
	return res, nil
}

// pushStatus reads git push --porcelain's line for refspec: its flag
// (' ' fast-forward, '*' new, '=' up to date, '!' rejected) and summary.
func pushStatus(out, refspec string) (flag, summary string) {
	for _, l := range strings.Split(out, "\n") {
		f := strings.SplitN(l, "\t", 3)
		if len(f) == 3 && len(f[0]) == 1 && f[1] == refspec {
			return f[0], strings.TrimSpace(f[2])
		}
	}
	return "", ""
}

// redactURL drops a password from a URL for messages.
func redactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		return u.Redacted()
	}
	return raw
}
