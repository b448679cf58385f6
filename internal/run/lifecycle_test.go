package run

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
)

// The restart wrapper runs the first command until the session's log
// exists, then the resuming one, and passes every argument through
// untouched.
func TestRestartScript(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "s.jsonl")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	first := []string{"printf", "[%s]", "--session-id=abc", "b c", "$(touch pwned)", "-p"}
	resumed := []string{"printf", "<%s>", "--resume=abc", "b c", "$(touch pwned)", "-p"}
	tests := []struct {
		name, log, want string
	}{
		{"first start", filepath.Join(dir, "missing.jsonl"), "[--session-id=abc][b c][$(touch pwned)][-p]"},
		{"restart", existing, "<--resume=abc><b c><$(touch pwned)><-p>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv := append([]string{"/bin/sh", "-c", restartScript, "airlock-restart", tt.log, strconv.Itoa(len(first))}, first...)
			argv = append(argv, resumed...)
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if string(out) != tt.want {
				t.Fatalf("got %s, want %s", out, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
				t.Fatal("an argument was run as shell syntax")
			}
		})
	}
}

func testManager(t *testing.T) *Manager {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &Manager{Store: st}
}

func mkRun(t *testing.T, m *Manager, id string) *store.Run {
	t.Helper()
	r := &store.Run{ID: id, Status: store.StatusSucceeded, SessionID: "11111111-2222-4333-8444-555555555555"}
	if err := m.Store.Create(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The conversation is restored, moved aside by rm and restored again; links
// the agent planted in its home never carry host files into a sandbox.
func TestSessionSaveAndRestore(t *testing.T) {
	m := testManager(t)
	from := mkRun(t, m, "from-00000001")
	secret := filepath.Join(t.TempDir(), "host-secret")
	write(t, secret, "host secret")
	proj := filepath.Join(m.Store.RunDir(from.ID), "home", sessionRel(from))
	write(t, filepath.Join(proj, from.SessionID+".jsonl"), "conversation\n")
	write(t, filepath.Join(proj, "memory", "notes.md"), "memory\n")
	if err := os.Symlink(secret, filepath.Join(proj, "link.jsonl")); err != nil {
		t.Fatal(err)
	}

	restore := func(to string) string {
		t.Helper()
		r := mkRun(t, m, to)
		if err := os.Mkdir(filepath.Join(m.Store.RunDir(to), "home"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := m.restoreSession(from, r, os.Getuid(), os.Getgid()); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(m.Store.RunDir(to), "home", sessionRel(from))
	}
	got := restore("to-00000001")
	if data, err := os.ReadFile(filepath.Join(got, from.SessionID+".jsonl")); err != nil || string(data) != "conversation\n" {
		t.Fatalf("restored transcript: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(got, "memory", "notes.md")); err != nil {
		t.Fatalf("project memory not restored: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(got, "link.jsonl")); err == nil {
		t.Fatal("a symbolic link was copied")
	}

	if err := m.keepSession(from); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(m.Store.RunDir(from.ID), "home")); err != nil {
		t.Fatal(err)
	}
	got = restore("to-00000002")
	if _, err := os.Stat(filepath.Join(got, from.SessionID+".jsonl")); err != nil {
		t.Fatalf("not restored from the kept session: %v", err)
	}

	// A home whose .claude is a link to elsewhere is not read.
	linked := mkRun(t, m, "linked-00000001")
	elsewhere := t.TempDir()
	write(t, filepath.Join(elsewhere, "projects", "-workspace", linked.SessionID+".jsonl"), "planted\n")
	write(t, filepath.Join(m.Store.RunDir(linked.ID), "home", "placeholder"), "")
	if err := os.Symlink(elsewhere, filepath.Join(m.Store.RunDir(linked.ID), "home", ".claude")); err != nil {
		t.Fatal(err)
	}
	to := mkRun(t, m, "to-00000003")
	err := m.restoreSession(linked, to, os.Getuid(), os.Getgid())
	if err == nil || !strings.Contains(err.Error(), "conversation was not kept") {
		t.Fatalf("restore through a link: %v", err)
	}
}

func TestRotateLogs(t *testing.T) {
	dir := t.TempDir()
	for leg := 1; leg <= 2; leg++ {
		write(t, filepath.Join(dir, agentLog), "leg")
		write(t, filepath.Join(dir, agentStderr), "err")
		if err := rotateLogs(dir); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{agentLog, agentStderr} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				t.Fatalf("leg %d: %s still in place", leg, name)
			}
			if _, err := os.Stat(filepath.Join(dir, name+"."+string(rune('0'+leg)))); err != nil {
				t.Fatalf("leg %d: %v", leg, err)
			}
		}
	}
}

// A run whose work did not come back is not resumable, saying why; one
// whose work is in the project (fetched, or --here) is.
func TestResumableNeedsTheWork(t *testing.T) {
	m := testManager(t)
	tests := []struct {
		id, head, harvestErr string
		here                 bool
		want                 string
	}{
		{"fetched-00000001", "0123456789abcdef0123456789abcdef01234567", "", false, ""},
		{"here-00000001", "", "", true, ""},
		{"lost-00000001", "", "the copy's .git is gone", false, "cannot resume run lost-00000001: its work was not brought back (the copy's .git is gone)"},
		{"never-00000001", "", "", false, "its work was not brought back (the agent never ran"},
	}
	for _, tt := range tests {
		r := mkRun(t, m, tt.id)
		r.Head, r.HarvestError, r.Here = tt.head, tt.harvestErr, tt.here
		write(t, filepath.Join(m.Store.RunDir(r.ID), "home", sessionRel(r), r.SessionID+".jsonl"), "conversation\n")
		err := m.Resumable(r)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.id, err)
		case tt.want != "" && (err == nil || !errors.Is(err, ErrWorkLost) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: error %v, want %q", tt.id, err, tt.want)
		}
	}
}
