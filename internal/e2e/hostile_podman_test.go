package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// The hostile-sandbox attacks on rootless Podman, the default way people
// run it, that only rootless Podman has: ownership across the user
// namespace. The others run on every engine (onEngines in their files).

// ownershipAttack is what the agent tries, from its workspace and its log
// directory: give files to root, to other uids of its user namespace
// (which are the user's subordinate uids on the host) and to a nested
// namespace's root, and set setuid and setgid bits on a shell.
const ownershipAttack = `cd /workspace && echo mine > given.txt && cp /bin/sh suid-sh && mkdir sgid-dir && ` +
	`for who in 0:0 1:1 65534:65534 100000:100000; do chown $who given.txt suid-sh sgid-dir /airlock/log/agent.jsonl 2>&1; done; ` +
	`unshare -r sh -c 'chown 0:0 given.txt; chown 1:1 suid-sh' 2>&1; ` +
	`chmod 6755 suid-sh; chmod 2775 sgid-dir; cp suid-sh /airlock/log/suid-sh && chmod 6755 /airlock/log/suid-sh; ` +
	`ls -ln given.txt suid-sh sgid-dir /airlock/log; git add -A && git commit -qm 'Add a setuid shell' && touch /tmp/attack-done && echo done && sleep 120`

// On rootless Podman the agent cannot make files on the host that belong
// to anyone but the invoking user, and no setuid bit reaches the user's
// repository or a file copied out with cp.
func TestHostileRootlessPodmanOwnership(t *testing.T) {
	e := newEnvOn(t, onRootlessPodman)
	e.server(testkit.BashScript("ownership", ownershipAttack))
	started := e.ok("run", "-d", "-y", "-m", "Own the host.", "--name", "owner").stdout
	id := regexp.MustCompile(`owner-[0-9a-f]+`).FindString(started)
	if id == "" {
		t.Fatalf("run -d printed no run ID:\n%s", started)
	}
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		if res := e.airlock("exec", id, "--", "test", "-e", "/tmp/attack-done"); res.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the attack never finished:\n%s", e.airlock("logs", id).stdout)
		}
	}
	out := filepath.Join(e.repo, "copied-sh")
	e.ok("cp", id+":/workspace/suid-sh", out)
	if fi, err := os.Lstat(out); err != nil || fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		t.Errorf("cp out of the sandbox: %v, %v; want a file with no setuid or setgid bit", fi, err)
	} else {
		owned(t, e, out)
	}
	e.ok("stop", id, "--timeout", "5s")
	run := e.run(id)

	// Everything the agent left in its directories on the host is the
	// user's. (A setuid bit on the user's own file there, which the agent
	// may set, gives nobody more than the user's rights; it does not reach
	// the repository or a copy, below.)
	runDir := filepath.Join(e.state, "airlock", "runs", id)
	for _, dir := range []string{filepath.Join(runDir, "workspace"), filepath.Join(runDir, "log")} {
		n := 0
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil {
				owned(t, e, path)
				n++
			}
			return nil
		})
		if n < 2 {
			t.Errorf("%s holds %d entries; the attack did not run", dir, n)
		}
	}
	if _, err := os.Lstat(filepath.Join(runDir, "workspace", "suid-sh")); err != nil {
		t.Fatalf("the agent made no suid-sh: %v", err)
	}

	// Harvested and merged, the shell reaches the repository without its
	// setuid bit.
	if modes := e.git("ls-tree", "-r", run.Branch); !strings.Contains(modes, "suid-sh") {
		t.Fatalf("the run's branch lacks the agent's commit:\n%s", modes)
	}
	e.ok("merge", id)
	fi, err := os.Lstat(filepath.Join(e.repo, "suid-sh"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		t.Errorf("merged suid-sh has mode %v", fi.Mode())
	}
	owned(t, e, filepath.Join(e.repo, "suid-sh"))
}

// owned fails the test unless path belongs to the test's user on the host
// and is not setuid or setgid to anyone else.
func owned(t *testing.T, e *env, path string) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uint32(e.uid()) || st.Gid != uint32(e.gid()) {
		t.Errorf("%s is owned by %d:%d on the host, want the user's %d:%d", path, st.Uid, st.Gid, e.uid(), e.gid())
	}
}
