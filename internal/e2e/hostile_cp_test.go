package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// hostileCpRun is a finished persistent run whose agent planted, in its
// workspace, everything that would make git run a command on the host
// (marker is the host file that command creates), a .git file naming the
// host repository, a nested repository of its own, special files, links
// leading out and a 3 MiB file.
func hostileCpRun(t *testing.T, e *env) (r store.Run, marker string) {
	marker = filepath.Join(t.TempDir(), "MARK") // a host path: absent in the sandbox
	touch := "touch " + marker
	hostile := strings.NewReplacer("{TOUCH}", touch, "{HOSTREPO}", e.repo).Replace(`set -e
cd /workspace
id='-c user.name=agent -c user.email=agent@airlock.invalid'
echo one > a.txt
printf '*.txt filter=evil diff=evil\n' > .gitattributes
git $id add -A && git $id commit -qm work && git branch other
# Everything in config that runs a command, and hooks.
git config core.fsmonitor '{TOUCH}'
git config filter.evil.clean '{TOUCH}'
git config filter.evil.smudge '{TOUCH}'
git config filter.evil.process '{TOUCH}'
git config diff.evil.textconv '{TOUCH}'
git config alias.st '!{TOUCH}'
mkdir -p .git/hooks .git/evilhooks
for h in pre-commit post-checkout post-commit commit-msg prepare-commit-msg post-index-change reference-transaction post-rewrite; do
  printf '#!/bin/sh\n{TOUCH} 2>/dev/null\nexit 0\n' > .git/hooks/$h && chmod +x .git/hooks/$h
  cp .git/hooks/$h .git/evilhooks/$h
done
git config core.hooksPath .git/evilhooks
printf '* filter=evil diff=evil\n' > .git/info/attributes
echo two >> a.txt
# A .git file naming a repository on the host.
mkdir -p linked && printf 'gitdir: {HOSTREPO}/.git\n' > linked/.git
# A nested repository with its own hostile config and hooks.
mkdir nested && cd nested && git init -q && echo n > n.txt && git $id add -A && git $id commit -qm nested
git config core.fsmonitor '{TOUCH}'
cp ../.git/hooks/post-checkout .git/hooks/post-checkout
cd ..
# Special files and links leading out.
mkfifo fifo
mkfifo "$(printf 'osc\033]52;c;aGk=\007\033[2Kfifo')"
python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'
ln -s /etc/passwd passwd
ln -s ../../.. up
ln -s /etc etcdir
ln a.txt hard.txt
ln -s a.txt rel-link
head -c 3145728 /dev/urandom > big.bin
git config --get core.fsmonitor >/dev/null && echo PLANTED-$((40+2))
`)
	e.server(testkit.BashScript("hostile-cp", hostile))
	e.ok("run", "-y", "--persistent", "-m", "Plant things for cp.", "--name", "hostile")
	r = e.run("hostile")
	if r.Status != store.StatusSucceeded {
		t.Fatalf("run: %s (%s)\n%s", r.Status, r.Error, e.airlock("logs", "hostile").stdout)
	}
	if raw := e.ok("logs", "--raw", "hostile").stdout; !strings.Contains(raw, "PLANTED-42") {
		t.Fatalf("the agent's steps did not all run:\n%s", raw)
	}
	return r, marker
}

// `airlock cp` of the hostile workspace brings none of the agent's git
// configuration, hooks or attributes: every git command a user would run
// in the copy leaves the marker uncreated; a .git file naming a host
// repository, special files and links leading out are left out, and every
// thing left out is listed.
func TestHostileCpOut(t *testing.T) { onEngines(t, rootfulEngines, hostileCpOut) }

func hostileCpOut(t *testing.T, e *env) {
	r, marker := hostileCpRun(t, e)
	parent := t.TempDir()
	dest := filepath.Join(parent, "copy")
	res := e.ok("cp", r.ID+":/workspace", dest)
	t.Logf("cp printed:\n%s", res.stderr)
	// What is left out is listed, one line each.
	for _, name := range []string{".git/config", ".git/hooks", ".git/info/attributes", "linked/.git",
		"nested/.git/config", "nested/.git/hooks", "fifo", "passwd", "up", "etcdir"} {
		if !strings.Contains(res.stderr, "left out workspace/"+name+":") {
			t.Errorf("cp did not report leaving out %s:\n%s", name, res.stderr)
		}
	}
	// Names are the agent's: no escape sequence reaches the terminal.
	if strings.ContainsAny(res.stderr, "\x1b\x07") || !strings.Contains(res.stderr, "left out workspace/osc") {
		t.Errorf("cp printed the agent's escape sequences, or not the name:\n%q", res.stderr)
	}
	for _, name := range []string{".git/hooks", ".git/info/attributes", "linked/.git", "nested/.git/hooks", "fifo", "sock", "passwd", "up", "etcdir"} {
		if _, err := os.Lstat(filepath.Join(dest, name)); err == nil {
			t.Errorf("cp wrote %s", name)
		}
	}
	for name, want := range map[string]string{"a.txt": "one\ntwo\n", "hard.txt": "one\ntwo\n", "rel-link": "one\ntwo\n"} {
		if data, err := os.ReadFile(filepath.Join(dest, name)); err != nil || string(data) != want {
			t.Errorf("%s in the copy = %q, %v; want %q", name, data, err, want)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dest, ".git", "config")); strings.Contains(string(data), "MARK") {
		t.Errorf(".git/config in the copy holds the agent's command:\n%s", data)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("cp left more than the copy beside it: %v", entries)
	}

	// Everything a user would do in the copy: nothing the agent planted runs.
	home := t.TempDir()
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=u", "GIT_AUTHOR_EMAIL=u@example.invalid",
			"GIT_COMMITTER_NAME=u", "GIT_COMMITTER_EMAIL=u@example.invalid")
		out, err := cmd.CombinedOutput()
		if _, serr := os.Stat(marker); serr == nil {
			t.Fatalf("git %s in %s ran the agent's command", strings.Join(args, " "), dir)
		}
		if err != nil {
			t.Fatalf("git %v in %s: %v\n%s", args, dir, err, out)
		}
		return string(out)
	}
	headBefore := e.git("rev-parse", "HEAD")
	branch := strings.TrimSpace(git(dest, "rev-parse", "--abbrev-ref", "HEAD"))
	for _, args := range [][]string{
		{"status"}, {"diff"}, {"log", "-p"}, {"add", "-A"}, {"commit", "-q", "-m", "user"},
		{"checkout", "-q", "other"}, {"checkout", "-q", branch},
	} {
		git(dest, args...)
	}
	// The agent's alias went with its config.
	st := exec.Command("git", "st")
	st.Dir, st.Env = dest, append(os.Environ(), "HOME="+home)
	if err := st.Run(); err == nil {
		t.Error("git st (the agent's alias) still works in the copy")
	}
	git(filepath.Join(dest, "nested"), "status")
	git(filepath.Join(dest, "nested"), "checkout", "-q", "-b", "x")
	git(filepath.Join(dest, "linked"), "status")
	if got := git(dest, "log", "--format=%s"); got != "user\nwork\ninitial\n" {
		t.Errorf("history in the copy = %q", got)
	}
	if e.git("rev-parse", "HEAD") != headBefore || e.git("status", "--porcelain") != "" {
		t.Error("git in the copy changed the host repository a .git file named")
	}

	// The workspace's .git into a repository of the user's: the agent's
	// HEAD, refs and index are not merged into it, and nothing is written.
	mine := t.TempDir()
	git(mine, "init", "-q", "-b", "mine")
	res = e.airlock("cp", r.ID+":/workspace/.git", mine)
	if res.code == 0 || !strings.Contains(res.stderr, "git directory") {
		t.Fatalf("cp of the workspace's .git into a repository: exit %d\n%s", res.code, res.stderr)
	}
	if head, _ := os.ReadFile(filepath.Join(mine, ".git", "HEAD")); string(head) != "ref: refs/heads/mine\n" {
		t.Errorf("the user's HEAD is now %q", head)
	}
	if entries, _ := os.ReadDir(mine); len(entries) != 1 {
		t.Errorf("a refused copy wrote %v", entries)
	}

}

// A copy over --max-size fails with an error naming the flag and leaves
// nothing behind, not even a partial copy.
func TestHostileCpMaxSize(t *testing.T) { onEngines(t, hostEngines, hostileCpMaxSize) }

func hostileCpMaxSize(t *testing.T, e *env) {
	r, _ := hostileCpRun(t, e)
	parent := e.tempDir()
	res := e.airlock("cp", "--max-size", "1m", r.ID+":/workspace", filepath.Join(parent, "big"))
	if res.code == 0 || !strings.Contains(res.stderr, "--max-size 1m") {
		t.Fatalf("cp over --max-size: exit %d\n%s", res.code, res.stderr)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("a copy over --max-size left %v", entries)
	}
	if res := e.airlock("cp", "--max-size", "lots", r.ID+":/workspace", parent); res.code != 2 {
		t.Fatalf("cp --max-size lots: exit %d, want 2\n%s", res.code, res.stderr)
	}

	// The default cap, 1 GiB, lets the same copy through.
	e.ok("cp", r.ID+":/workspace", filepath.Join(parent, "copy"))
}

// cp into a run that is not running is refused, with the reason and what
// to do, instead of succeeding with nothing the agent will ever see.
func TestHostileCpIntoStopped(t *testing.T) { onEngines(t, hostEngines, hostileCpIntoStopped) }

func hostileCpIntoStopped(t *testing.T, e *env) {
	e.server(testkit.BashScript("stop", "echo done"))
	e.ok("run", "-y", "--persistent", "-m", "Finish.", "--name", "stopped")
	r := e.run("stopped")
	host := filepath.Join(e.tempDir(), "in.txt")
	os.WriteFile(host, []byte("in\n"), 0o644)
	e.chown(host)
	res := e.airlock("cp", host, r.ID+":/workspace/in.txt")
	if res.code == 0 || !strings.Contains(res.stderr, "not running") || !strings.Contains(res.stderr, "airlock start "+r.ID) {
		t.Fatalf("cp into a stopped run: exit %d\n%s", res.code, res.stderr)
	}
	// A finished run that is not persistent: continue it in a new run.
	e.ok("run", "-y", "-m", "Finish.", "--name", "finished")
	r = e.run("finished")
	res = e.airlock("cp", host, r.ID+":/workspace/in.txt")
	if res.code == 0 || !strings.Contains(res.stderr, "not running") || !strings.Contains(res.stderr, "--resume "+r.ID) {
		t.Fatalf("cp into a finished run: exit %d\n%s", res.code, res.stderr)
	}
}
