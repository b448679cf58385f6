package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// isolate gives the test its own HOME and git identity, so the developer's
// global git config cannot change the results.
func isolate(t *testing.T) {
	t.Helper()
	home := t.TempDir()
	cfg := filepath.Join(home, ".gitconfig")
	writeFile(t, cfg, "[user]\n\tname = Test User\n\temail = user@example.test\n[init]\n\tdefaultBranch = main\n")
	t.Setenv("HOME", home)
	t.Setenv("GIT_CONFIG_GLOBAL", cfg)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
}

// git runs plain git (as the user or the agent would, without our hardening).
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	// Hooks off: the test's own git calls must not set off the markers.
	cmd := exec.Command("git", append([]string{"-c", "core.hooksPath=/dev/null"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newRepo makes a user repository on main with a few commits.
func newRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "user")
	git(t, t.TempDir(), "init", "-q", dir)
	writeFile(t, filepath.Join(dir, "README.md"), "# project\n")
	writeFile(t, filepath.Join(dir, "a.txt"), "one\ntwo\nthree\n")
	writeFile(t, filepath.Join(dir, ".gitignore"), "*.log\n")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "initial")
	writeFile(t, filepath.Join(dir, "lib/util.go"), "package lib\n")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "add lib")
	return dir
}

// newCopy creates the run's copy of repo.
func newCopy(t *testing.T, repo, id string) (string, Created) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "runs", id, "workspace")
	c, err := Create(context.Background(), CreateOptions{Repo: repo, ID: id, Dest: dest, UID: -1, GID: -1})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return dest, c
}

// harvest runs the harvest script with sh on the host, as the harvest
// container would run it, and returns the output dir.
func harvest(t *testing.T, copyDir, branch string, exclude ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", HarvestScript(branch, exclude...))
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "AIRLOCK_WORKSPACE="+copyDir, "AIRLOCK_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("harvest script: %v\n%s", err, b)
	}
	return out
}

// treeHash hashes every path, mode, link target and file content under dir.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		h.Write([]byte(rel + "\x00" + fi.Mode().String() + "\x00"))
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			h.Write([]byte(l))
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			h.Write(b)
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// hookNames is every hook git knows about.
var hookNames = []string{
	"applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
	"prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge",
	"pre-push", "pre-receive", "update", "proc-receive", "post-receive", "post-update",
	"reference-transaction", "push-to-checkout", "pre-auto-gc", "post-rewrite", "sendemail-validate",
	"fsmonitor-watchman", "p4-changelist", "p4-prepare-changelist", "p4-post-changelist", "p4-pre-submit",
	"post-index-change",
}

// plantHooks installs every hook in dir, each touching a marker named after
// itself (and the repo label) in markers.
func plantHooks(t *testing.T, dir, label, markers string) {
	t.Helper()
	for _, h := range hookNames {
		p := filepath.Join(dir, h)
		writeFile(t, p, "#!/bin/sh\ntouch '"+markers+"/"+label+"-hook-"+h+"'\ncat >/dev/null 2>&1 </dev/null\nexit 0\n")
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// makeHostile does to the copy what a malicious agent could: every hook and
// every config key that runs a command, each touching a marker file.
func makeHostile(t *testing.T, copyDir, markers string) {
	t.Helper()
	gitDir := filepath.Join(copyDir, ".git")
	plantHooks(t, filepath.Join(gitDir, "hooks"), "copy", markers)
	plantHooks(t, filepath.Join(gitDir, "evilhooks"), "copyhookspath", markers)
	touch := func(name string) string { return "touch '" + markers + "/copy-" + name + "'" }
	cfg := map[string]string{
		"core.hooksPath":             filepath.Join(gitDir, "evilhooks"),
		"core.fsmonitor":             touch("fsmonitor") + "; false",
		"core.pager":                 touch("pager") + "; cat",
		"core.editor":                touch("editor"),
		"sequence.editor":            touch("seqeditor"),
		"core.sshCommand":            touch("sshcommand"),
		"core.askPass":               touch("askpass"),
		"core.alternateRefsCommand":  touch("altrefs"),
		"diff.external":              touch("diffexternal"),
		"diff.evil.textconv":         touch("textconv") + "; cat",
		"diff.evil.command":          touch("diffcommand"),
		"filter.evil.clean":          touch("filterclean") + "; cat",
		"filter.evil.smudge":         touch("filtersmudge") + "; cat",
		"filter.evil.process":        touch("filterprocess"),
		"filter.evil.required":       "true",
		"merge.evil.driver":          touch("mergedriver") + "; false",
		"credential.helper":          "!" + touch("credential"),
		"gpg.program":                touch("gpg"),
		"commit.gpgSign":             "true",
		"uploadpack.packObjectsHook": touch("packobjectshook"),
		"remote.origin.url":          "ext::sh -c " + touch("extremote"),
		"protocol.ext.allow":         "always",
		"pager.status":               touch("pagerstatus") + "; cat",
		"pager.diff":                 touch("pagerdiff") + "; cat",
		"pager.log":                  touch("pagerlog") + "; cat",
		"core.untrackedCache":        "true",
	}
	for k, v := range cfg {
		git(t, copyDir, "config", k, v)
	}
	// Attributes pointing every file at the evil drivers, both in the work
	// tree (where a merge would carry them to the user) and in .git/info.
	writeFile(t, filepath.Join(gitDir, "info", "attributes"), "* filter=evil diff=evil merge=evil\n")
}

// markers lists the marker files that appeared.
func markers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
