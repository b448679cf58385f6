package workspace

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPush(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	repo, bare := t.TempDir(), t.TempDir()
	git(t, bare, "init", "-q", "--bare")
	git(t, repo, "init", "-q")
	writeFile(t, filepath.Join(repo, "a.txt"), "a\n")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-qm", "base")
	git(t, repo, "branch", "airlock/r1")
	git(t, repo, "remote", "add", "origin", bare)
	// The user's pre-push hook would run on the agent's work: it must not.
	marker := filepath.Join(t.TempDir(), "ran")
	writeFile(t, filepath.Join(repo, ".git", "hooks", "pre-push"), "#!/bin/sh\ntouch "+marker+"\n")
	os.Chmod(filepath.Join(repo, ".git", "hooks", "pre-push"), 0o755)
	head := git(t, repo, "rev-parse", "airlock/r1")

	res, err := Push(ctx, repo, "r1", PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Remote != "origin" || res.Branch != "airlock/r1" || res.Commit != head || res.URL != bare {
		t.Errorf("first push: %+v", res)
	}
	if got := git(t, bare, "rev-parse", "refs/heads/airlock/r1"); got != head {
		t.Errorf("remote has %s, want %s", got, head)
	}
	if res, err = Push(ctx, repo, "r1", PushOptions{}); err != nil || !res.UpToDate {
		t.Errorf("second push: %+v, %v", res, err)
	}
	if res, err = Push(ctx, repo, "r1", PushOptions{Branch: "feature/x"}); err != nil || !res.Created || git(t, bare, "rev-parse", "feature/x") != head {
		t.Errorf("push as feature/x: %+v, %v", res, err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the pre-push hook ran")
	}

	// The remote's branch moved on: refused, and left as it was.
	other := t.TempDir()
	git(t, other, "clone", "-q", bare, ".")
	git(t, other, "checkout", "-q", "airlock/r1")
	writeFile(t, filepath.Join(other, "b.txt"), "b\n")
	git(t, other, "add", ".")
	git(t, other, "commit", "-qm", "someone else's")
	git(t, other, "push", "-q", "origin", "airlock/r1")
	moved := git(t, bare, "rev-parse", "airlock/r1")
	writeFile(t, filepath.Join(repo, "c.txt"), "c\n")
	git(t, repo, "checkout", "-q", "airlock/r1")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-qm", "run's")
	git(t, repo, "checkout", "-q", "-")
	_, err = Push(ctx, repo, "r1", PushOptions{})
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "never force-pushes") {
		t.Errorf("diverged push: %v", err)
	}
	if got := git(t, bare, "rev-parse", "airlock/r1"); got != moved {
		t.Errorf("a rejected push changed the remote: %s, want %s", got, moved)
	}

	for _, tc := range []struct {
		opts PushOptions
		id   string
		want string
	}{
		{PushOptions{Remote: "upstream"}, "r1", `no such remote "upstream" in ` + repo + " (it has origin)"},
		{PushOptions{Remote: "--mirror"}, "r1", "no such remote"},
		{PushOptions{Branch: "a..b"}, "r1", "not a valid branch name"},
		{PushOptions{Branch: "-f"}, "r1", "give a branch name"},
		{PushOptions{}, "nope", "airlock/nope does not exist"},
	} {
		if _, err := Push(ctx, repo, tc.id, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Push(%s, %+v) = %v, want an error containing %q", tc.id, tc.opts, err, tc.want)
		}
	}
	if refs := git(t, bare, "for-each-ref", "--format=%(refname)"); refs != "refs/heads/airlock/r1\nrefs/heads/feature/x" {
		t.Errorf("remote refs:\n%s", refs)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:secret@github.com/o/r.git": "https://u:xxxxx@github.com/o/r.git",
		"https://u@github.com/o/r.git":        "https://u@github.com/o/r.git",
		"git@github.com:o/r.git":              "git@github.com:o/r.git",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
