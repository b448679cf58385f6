package run

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/store"
)

// setupScript under a real /bin/sh: the commands in order, then the
// agent; the first failure ends it with that command's status; the host's
// done marker skips them.
func TestSetupScript(t *testing.T) {
	tests := []struct {
		name     string
		cmds     []string
		done     bool
		wantCode int
		wantOut  string // the agent's output
		wantLog  []string
		status   string
	}{
		{name: "all succeed", cmds: []string{"echo one", "echo two; echo err >&2"}, wantOut: "agent ran\n",
			wantLog: []string{"$ echo one\none\n$ echo two; echo err >&2\ntwo\nerr\n"}, status: "ok\n"},
		{name: "second fails", cmds: []string{"true", "echo no; exit 7", "echo never"}, wantCode: 7,
			wantLog: []string{"$ echo no; exit 7\nno\nairlock: setup command 2 exited with status 7; the agent was not started\n"}, status: "2 7\n"},
		{name: "quotes stay words", cmds: []string{`printf '%s\n' "$HOME" 'a b'`}, wantOut: "agent ran\n", wantLog: []string{"a b\n"}, status: "ok\n"},
		{name: "done skips", cmds: []string{"echo must not run", "exit 1"}, done: true, wantOut: "agent ran\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, logs := t.TempDir(), t.TempDir()
			if tt.done {
				os.WriteFile(filepath.Join(state, setupDoneFile), nil, 0o644)
			}
			args := append([]string{"-c", setupScript, "airlock-setup", state, logs, strconv.Itoa(len(tt.cmds))}, tt.cmds...)
			args = append(args, "/bin/sh", "-c", "echo agent ran")
			cmd := exec.Command("/bin/sh", args...)
			cmd.Stdin = strings.NewReader("must not be read")
			out, err := cmd.Output()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || string(out) != tt.wantOut {
				t.Errorf("exit %d, output %q; want %d, %q", code, out, tt.wantCode, tt.wantOut)
			}
			log, _ := os.ReadFile(filepath.Join(logs, setupLog))
			for _, w := range tt.wantLog {
				if !strings.Contains(string(log), w) {
					t.Errorf("setup log %q lacks %q", log, w)
				}
			}
			if tt.done && len(log) > 0 {
				t.Errorf("the setup ran although done: %q", log)
			}
			if status, _ := os.ReadFile(filepath.Join(logs, setupStatus)); string(status) != tt.status {
				t.Errorf("status %q, want %q", status, tt.status)
			}
		})
	}
}

// The host believes the container's account of a failed setup only as far
// as the engine's exit code confirms it, names the command from its own
// record, and takes completion from the proxy's meter alone.
func TestSetupOutcome(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := &Manager{Store: st}
	r := &store.Run{ID: "r-1", Setup: []string{"npm ci", "make"}}
	logs := filepath.Join(st.RunDir(r.ID), "log")
	os.MkdirAll(logs, 0o755)
	status := func(s string) { os.WriteFile(filepath.Join(logs, setupStatus), []byte(s), 0o644) }
	tests := []struct {
		name     string
		status   string
		code     int
		requests int
		done     bool
		failHas  string
	}{
		{name: "failed, confirmed", status: "2 3\n", code: 3, failHas: `setup command 2 of 2, "make", exited with status 3`},
		{name: "exit code differs", status: "2 3\n", code: 1},
		{name: "index out of range", status: "3 1\n", code: 1},
		{name: "agent ran", status: "ok\n", requests: 1, done: true},
		{name: "status says ok, no model request", status: "ok\n", code: 0},
		{name: "claims failure, but the agent ran", status: "1 1\n", code: 1, requests: 2, done: true},
		{name: "garbage", status: "\x1b]0;x\x07 1", code: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status(tt.status)
			done, fail := m.setupOutcome(r, tt.code, egress.Meter{ModelRequests: tt.requests})
			if done != tt.done || (tt.failHas == "") != (fail == "") || !strings.Contains(fail, tt.failHas) {
				t.Errorf("setupOutcome = %v, %q; want %v, %q", done, fail, tt.done, tt.failHas)
			}
		})
	}
	os.Remove(filepath.Join(logs, setupStatus))
	os.Symlink("/etc/passwd", filepath.Join(logs, setupStatus))
	if _, fail := m.setupOutcome(r, 1, egress.Meter{}); fail != "" {
		t.Errorf("a status file that is a link was read: %q", fail)
	}
}
