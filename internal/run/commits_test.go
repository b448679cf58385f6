package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/memengine"
	"github.com/airlock-dev/airlock/internal/store"
)

// hostExec runs an exec's command on the host, in the host directory its
// working directory is mounted from, as the container's exec user: the
// in-memory engine's stand-in for running it in the sandbox (the real one
// is in internal/e2e). It counts the commands it runs.
func hostExec(count *atomic.Int32) memengine.ExecFunc {
	return func(p *memengine.Proc, spec sandbox.ExecSpec) int {
		count.Add(1)
		dir, _, err := p.HostPath(spec.WorkDir)
		if err != nil {
			return 126
		}
		cmd := exec.Command(spec.Cmd[0], spec.Cmd[1:]...)
		cmd.Dir = dir
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/tmp"}, spec.Env...)
		cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
		if os.Getuid() == 0 {
			traversable(dir)
			u, g, _ := strings.Cut(spec.User, ":")
			uid, _ := strconv.ParseUint(u, 10, 32)
			gid, _ := strconv.ParseUint(g, 10, 32)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		}
		err = cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		} else if err != nil {
			return 127
		}
		return 0
	}
}

// agentCommit commits a file in the agent's copy with the given message.
func agentCommit(p *memengine.Proc, name, message string) bool {
	if err := p.WriteFile(containerWorkspace+"/"+name, []byte(name+"\n")); err != nil {
		p.Log(err.Error())
		return false
	}
	ws, _, _ := p.HostPath(containerWorkspace)
	git := []string{"git", "-c", "user.name=Agent", "-c", "user.email=agent@example.invalid"}
	msg := filepath.Join(ws, ".git", "MSG")
	if err := os.WriteFile(msg, []byte(message), 0o644); err != nil {
		return false
	}
	return asUser(p, ws, nil, append(git, "add", name)...) == nil &&
		asUser(p, ws, nil, append(git, "commit", "-q", "--cleanup=verbatim", "-F", msg)...) == nil
}

// A running run's commits are read in its sandbox, one by one as the agent
// makes them; once it finished, the same commits are read from the branch
// its work was brought back to, with no exec.
func TestCommitsRunningThenHarvested(t *testing.T) {
	w := newWorld(t)
	var execs atomic.Int32
	eng := w.eng.WithExec(hostExec(&execs))
	w.m.Engine, w.m.Caps = eng, sandbox.CapsOf(eng)
	next := make(chan struct{})
	hostile := "evil \x1b]52;c;cHduZWQ=\x07\x1b[2Jsubject \u202e<img src=x onerror=alert(1)>"
	w.setAgent(func(p *memengine.Proc) int {
		if !agentCommit(p, "one.txt", "first commit\n\nbody") {
			return 90
		}
		select {
		case <-next:
		case <-p.Killed():
			return 137
		}
		if !agentCommit(p, "two.txt", hostile) {
			return 91
		}
		<-next
		return 0
	})
	r := w.start(w.request("commits"))
	ctx := context.Background()

	waitFor := func(n int) []Commit {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := w.m.Commits(ctx, r, true)
			if err != nil {
				t.Fatalf("Commits: %v", err)
			}
			if len(got) >= n || time.Now().After(deadline) {
				return got
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	got := waitFor(1)
	if len(got) != 1 || got[0].Subject != "first commit" || !strings.Contains(got[0].Stat, "one.txt") || got[0].Author != "Agent" {
		t.Fatalf("after one commit: %+v", got)
	}
	if execs.Load() == 0 {
		t.Fatal("a running run's commits were not read in its sandbox")
	}
	next <- struct{}{}
	running := waitFor(2)
	if len(running) != 2 || running[0].SHA != got[0].SHA || running[1].Subject != hostile ||
		!strings.Contains(running[1].Stat, "two.txt") || strings.Contains(running[1].Stat, "one.txt") {
		t.Fatalf("after two commits, oldest first: %+v", running)
	}
	if d := time.Since(running[1].Time); d < 0 || d > time.Hour {
		t.Errorf("commit time %v", running[1].Time)
	}
	noStat, err := w.m.Commits(ctx, r, false)
	if err != nil || len(noStat) != 2 || noStat[1].Stat != "" {
		t.Fatalf("without stat: %+v, %v", noStat, err)
	}

	close(next)
	r = w.wait(r)
	if !r.Harvested || r.HarvestError != "" {
		t.Fatalf("not harvested: %+v", r)
	}
	before := execs.Load()
	done, err := w.m.Commits(ctx, r, true)
	if err != nil {
		t.Fatal(err)
	}
	if execs.Load() != before {
		t.Error("a finished run's commits were read in a sandbox")
	}
	if len(done) != 2 {
		t.Fatalf("finished: %+v", done)
	}
	for i := range done {
		if done[i] != running[i] {
			t.Errorf("commit %d: harvested %+v, in the sandbox %+v", i, done[i], running[i])
		}
	}
}

// A run whose commits cannot be listed says why.
func TestCommitsUnavailable(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	now := time.Now()
	tests := []struct {
		name string
		run  store.Run
		want string
	}{
		{"removed", store.Run{Status: store.StatusSucceeded, BaseCommit: strings.Repeat("a", 40), Harvested: true, RemovedAt: now}, "was removed"},
		{"here", store.Run{Status: store.StatusSucceeded, Here: true, Harvested: true}, "--here"},
		{"creating", store.Run{Status: store.StatusCreating, BaseCommit: strings.Repeat("a", 40)}, "still being created"},
		{"harvest failed", store.Run{Status: store.StatusFailed, BaseCommit: strings.Repeat("a", 40), Harvested: true, HarvestError: "no .git"}, "could not be brought back"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.run
			r.ID, r.Project, r.CreatedAt = "r-"+strings.ReplaceAll(tt.name, " ", "-"), w.repo, now
			if err := w.m.Store.Create(&r); err != nil {
				t.Fatal(err)
			}
			_, err := w.m.Commits(ctx, &r, false)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Commits = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	// A running run on an engine that cannot exec.
	w.setAgent(untilKilled)
	r := w.start(w.request("noexec"))
	defer w.m.Stop(ctx, r, time.Second)
	if _, err := w.m.Commits(ctx, r, false); err == nil || !strings.Contains(err.Error(), "run commands in a sandbox") {
		t.Fatalf("Commits without exec = %v", err)
	}
}

func TestParseLog(t *testing.T) {
	sha1, sha2 := strings.Repeat("a", 40), strings.Repeat("b", 64)
	rec := func(sha, author, at, subject, stat string) string {
		return "\x00" + sha + "\x00" + author + "\x00" + at + "\x00" + subject + "\x00" + stat
	}
	good := rec(sha2, "B   ", "1700000100", "second  ", "\n\n x | 1 +\n 1 file changed\n") + rec(sha1, "A", "1700000000", "first", "\n")
	tests := []struct {
		name    string
		out     string
		cut     bool
		want    []string // SHAs, oldest first
		wantErr string
	}{
		{"empty", "", false, nil, ""},
		{"two, newest first", good, false, []string{sha1, sha2}, ""},
		{"cut inside the last record", good[:len(good)-3], true, []string{sha2}, ""},
		{"cut inside the first record", good[:30], true, nil, ""},
		{"cut after a whole record's stat", rec(sha2, "B", "1", "s", "\n x | 1 +"), true, nil, ""},
		{"junk before", "warning: x\n" + good, false, nil, "does not start with a commit"},
		{"short sha", rec("abc", "A", "1", "s", ""), false, nil, "not a commit id"},
		{"upper-case sha", rec(strings.Repeat("A", 40), "A", "1", "s", ""), false, nil, "not a commit id"},
		{"bad time", rec(sha1, "A", "-5", "s", ""), false, nil, "has the time"},
		{"huge time", rec(sha1, "A", "1234567890123", "s", ""), false, nil, "has the time"},
		{"missing field", "\x00" + sha1 + "\x00A\x001\x00s", false, nil, "not five"},
		{"extra NUL", rec(sha1, "A", "1", "s\x00t", ""), false, nil, "not five"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLog([]byte(tt.out), tt.cut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var shas []string
			for _, c := range got {
				shas = append(shas, c.SHA)
			}
			if strings.Join(shas, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", shas, tt.want)
			}
		})
	}
	got, _ := parseLog([]byte(good), false)
	if got[1].Author != "B" || got[1].Subject != "second" || got[1].Stat != " x | 1 +\n 1 file changed" || got[0].Stat != "" ||
		!got[1].Time.Equal(time.Unix(1700000100, 0)) {
		t.Errorf("fields: %+v", got)
	}
}

// A log of commits with subjects of megabytes (characters of no width,
// which git's own truncation lets through) is cut at the cap, git is
// stopped, and the newest whole commits are kept, each subject clipped.
func TestCommitsHugeLog(t *testing.T) {
	w := newWorld(t)
	base := strings.TrimSpace(w.git("rev-parse", "HEAD"))
	w.git("checkout", "-q", "-b", "airlock/huge")
	huge := "x" + strings.Repeat("\u0301", 3<<19) // 3 MiB of combining accents
	msg := filepath.Join(t.TempDir(), "msg")
	for i := range 3 {
		if err := os.WriteFile(msg, []byte(huge+strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		w.git("commit", "-q", "--allow-empty", "--cleanup=verbatim", "-F", msg)
	}
	w.git("checkout", "-q", "main")
	r := &store.Run{ID: "huge", Project: w.repo, Status: store.StatusSucceeded, BaseCommit: base,
		Harvested: true, StartedAt: time.Now(), CreatedAt: time.Now()}
	if err := w.m.Store.Create(r); err != nil {
		t.Fatal(err)
	}
	got, err := w.m.Commits(context.Background(), r, true)
	if err != nil {
		t.Fatal(err)
	}
	head := strings.TrimSpace(w.git("rev-parse", "airlock/huge"))
	if len(got) != 1 || got[0].SHA != head {
		t.Fatalf("got %d commits, want the newest alone", len(got))
	}
	if n := len(got[0].Subject); n > subjectMax || n < 100 {
		t.Errorf("subject of %d bytes", n)
	}
}

// Only the newest commitsMax commits are listed, still oldest first.
func TestCommitsNewestOnly(t *testing.T) {
	w := newWorld(t)
	base := strings.TrimSpace(w.git("rev-parse", "HEAD"))
	var stream strings.Builder
	for i := range commitsMax + 20 {
		fmt.Fprintf(&stream, "commit refs/heads/airlock/many\ncommitter T <t@example.invalid> %d +0000\ndata <<END\nc%d\nEND\n", 1700000000+i, i)
		if i == 0 {
			fmt.Fprintf(&stream, "from %s\n", base)
		}
		stream.WriteString("\n")
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir, cmd.Stdin = w.repo, strings.NewReader(stream.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fast-import: %v\n%s", err, out)
	}
	r := &store.Run{ID: "many", Project: w.repo, Status: store.StatusSucceeded, BaseCommit: base,
		Harvested: true, StartedAt: time.Now(), CreatedAt: time.Now()}
	if err := w.m.Store.Create(r); err != nil {
		t.Fatal(err)
	}
	got, err := w.m.Commits(context.Background(), r, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != commitsMax || got[0].Subject != "c20" || got[len(got)-1].Subject != fmt.Sprintf("c%d", commitsMax+19) {
		t.Fatalf("got %d commits, %q to %q", len(got), got[0].Subject, got[len(got)-1].Subject)
	}
}

// A running run's diff so far is read in its sandbox: committed and
// uncommitted changes to tracked files, each output capped; once the run
// ended there is no live diff (ErrNotRunning), its work is on its branch.
func TestLiveDiff(t *testing.T) {
	w := newWorld(t)
	var execs atomic.Int32
	eng := w.eng.WithExec(hostExec(&execs))
	w.m.Engine, w.m.Caps = eng, sandbox.CapsOf(eng)
	next := make(chan struct{})
	w.setAgent(func(p *memengine.Proc) int {
		if !agentCommit(p, "one.txt", "first commit") {
			return 90
		}
		ws, _, _ := p.HostPath(containerWorkspace)
		if err := os.WriteFile(filepath.Join(ws, "one.txt"), []byte(strings.Repeat("changed, not committed\n", 200)), 0o644); err != nil {
			return 91
		}
		if err := os.WriteFile(filepath.Join(ws, ".git", "READY"), nil, 0o644); err != nil {
			return 92
		}
		select {
		case <-next:
		case <-p.Killed():
			return 137
		}
		return 0
	})
	r := w.start(w.request("livediff"))
	ctx := context.Background()
	ready := filepath.Join(w.m.Store.RunDir(r.ID), "workspace", ".git", "READY")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent never got ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	stat, patch, err := w.m.LiveDiff(ctx, r, 1<<20, 1<<20)
	if err != nil {
		t.Fatalf("LiveDiff: %v", err)
	}
	if !strings.Contains(stat, "one.txt") || !strings.Contains(patch, "+changed, not committed") || execs.Load() == 0 {
		t.Errorf("live diff from the sandbox: stat %q, patch %d bytes, %d execs", stat, len(patch), execs.Load())
	}
	_, cut, err := w.m.LiveDiff(ctx, r, 1<<20, 100)
	if err != nil || len(cut) != 100 {
		t.Errorf("a patch capped at 100 bytes: %d bytes, %v; want 100 and no error", len(cut), err)
	}

	close(next)
	r = w.wait(r)
	if _, _, err := w.m.LiveDiff(ctx, r, 1<<20, 1<<20); !errors.Is(err, ErrNotRunning) {
		t.Errorf("LiveDiff of a finished run: %v, want ErrNotRunning", err)
	}
}
