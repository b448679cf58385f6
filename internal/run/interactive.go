package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// An interactive run's agent is Claude Code's own terminal UI, running in a
// tmux session inside the container so that people can attach, detach and
// attach again, and automation can send keys and read the screen. The
// container lives as long as that session.
const (
	// TmuxSession is the tmux session the agent runs in.
	TmuxSession   = "agent"
	shellExitFile = "agent.exit"
	tmuxConf      = "/tmp/airlock-tmux.conf"
)

// tmuxOptions make the session fit for a person at a modern terminal.
// window-size latest makes the window follow the terminal that attached
// last, so a resize of the user's terminal reaches the agent.
var tmuxOptions = []string{
	"set -g default-terminal tmux-256color",
	"set -g history-limit 50000",
	"set -g escape-time 10",
	"set -g focus-events on",
	"set -g window-size latest",
	"set -g status-left '[airlock] '",
	"set -g status-right 'Ctrl-b d: detach '",
}

// shellScript starts the agent's argv ("$@") in a detached tmux session,
// records its exit status, and lives until the session ends, then exits
// with the agent's status.
var shellScript = `printf '%s\n' ` + shellQuoteAll(tmuxOptions) + ` >` + tmuxConf + `
tmux -u -f ` + tmuxConf + ` new-session -d -s ` + TmuxSession + ` -n claude -x 120 -y 40 -- /bin/sh -c '"$@"; echo $? >` + containerLogDir + "/" + shellExitFile + `' airlock-agent "$@" || exit 125
while tmux has-session -t ` + TmuxSession + ` 2>/dev/null; do sleep 1; done
code=$(cat ` + containerLogDir + "/" + shellExitFile + ` 2>/dev/null)
exit "${code:-1}"`

// shellCommand is the container command of an interactive run.
func shellCommand(a agent.Agent, o agent.Options) []string {
	return append([]string{"/bin/sh", "-c", shellScript, "airlock-shell"}, a.Interactive(o)...)
}

func shellQuoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// hookCommand appends an event line for each Claude Code notification (the
// agent waits for input), using the airlock binary mounted in every sandbox.
var hookCommand = sandbox.BinaryPath + " agent-hook --append " + containerLogDir + "/" + eventsFile

// seedAgent writes the agent's first-run configuration into the run's home,
// so that it starts without asking anything and talks only to its proxy;
// an interactive run's user lands in a working session.
func (m *Manager) seedAgent(r *store.Run, req Request, uid, gid int) error {
	return req.agent().Seed(filepath.Join(m.Store.RunDir(r.ID), "home"), agent.SeedOptions{
		Interactive: r.Kind == KindShell,
		Workdir:     containerWorkspace,
		Env:         req.Egress.Auth.Env,
		Model:       req.Model,
		EventsPath:  containerLogDir + "/" + eventsFile,
		HookCommand: hookCommand,
	}, uid, gid)
}

// OpenTranscript opens the run's transcript as untrusted, positioned at
// most transcript.MaxWindow bytes from its end. An interactive run's lies
// deep in the agent's home, where every directory on the way is the
// agent's to replace with a link: none may lead out of the home.
func (m *Manager) OpenTranscript(r *store.Run) (*os.File, error) {
	var f *os.File
	var err error
	if r.Kind == KindShell {
		rel := agentOf(r).SessionLog(containerWorkspace, r.SessionID)
		if rel == "" {
			return nil, fmt.Errorf("%s writes no transcript in an interactive session: %w", agentOf(r).Title(), fs.ErrNotExist)
		}
		f, err = untrusted.OpenIn(filepath.Join(m.Store.RunDir(r.ID), "home"), rel)
	} else {
		f, err = untrusted.Open(m.LogPath(r))
	}
	if err != nil {
		return nil, err
	}
	if _, err := untrusted.SeekLines(f, transcript.MaxWindow); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ErrNotInteractive is returned (wrapped) for a headless run where an
// interactive one is needed.
var ErrNotInteractive = errors.New("not an interactive run")

// ErrNotRunning is returned (wrapped) when a run's container is not running.
var ErrNotRunning = errors.New("not running")

// Session is a running interactive sandbox: what attach, exec, cp and tmux
// act on.
type Session struct {
	Run    *store.Run
	Execer sandbox.Execer
	User   string // "uid:gid" of the agent
}

// Session checks that a run's container is running and returns what it
// takes to act in it. Any run kind will do for exec and cp; tmux and attach
// want an interactive run (RequireShell).
func (m *Manager) Session(ctx context.Context, r *store.Run) (*Session, error) {
	ex := m.Caps.Exec
	if ex == nil {
		return nil, m.Caps.Missing("run commands in a sandbox (exec, attach, cp, tmux)")
	}
	r, err := m.Reconcile(ctx, r)
	if err != nil {
		return nil, err
	}
	if r.Status != store.StatusRunning {
		return nil, fmt.Errorf("run %s is %w (%s): there is no sandbox to act in (see `airlock logs %s`)", r.ID, ErrNotRunning, r.Status, r.ID)
	}
	uid, gid := User(m.UID, m.GID)
	return &Session{Run: r, Execer: ex, User: fmt.Sprintf("%d:%d", uid, gid)}, nil
}

// RequireShell refuses a headless run, saying what to use instead.
func RequireShell(r *store.Run) error {
	if r.Kind != KindShell {
		return fmt.Errorf("run %s is a headless run (%w): there is no terminal to attach to; follow it with `airlock logs -f %s`", r.ID, ErrNotInteractive, r.ID)
	}
	return nil
}

// Exec runs cmd in the sandbox as the agent, in /workspace.
func (s *Session) Exec(ctx context.Context, spec sandbox.ExecSpec) (int, error) {
	spec.User = s.User
	if spec.WorkDir == "" {
		spec.WorkDir = containerWorkspace
	}
	return s.Execer.Exec(ctx, s.Run.Container, spec)
}

// Output runs cmd and returns its standard output; a non-zero exit status
// is an error carrying its standard error.
func (s *Session) Output(ctx context.Context, cmd ...string) (string, error) {
	var out, errOut bytes.Buffer
	code, err := s.Exec(ctx, sandbox.ExecSpec{Cmd: cmd, Stdout: &out, Stderr: &errOut})
	if err != nil {
		return "", err
	}
	if code != 0 {
		return out.String(), fmt.Errorf("%s in run %s: exit status %d: %s", cmd[0], s.Run.ID, code, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// WaitTmux waits until the agent's tmux session exists (it starts a moment
// after the container).
func (s *Session) WaitTmux(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, err := s.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"tmux", "has-session", "-t", TmuxSession}})
		if err != nil {
			return err
		}
		if code == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("run %s: the agent's tmux session did not appear within %s (see `airlock logs %s`)", s.Run.ID, timeout, s.Run.ID)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Terminal picks the TERM for a client attaching from a terminal of type
// term: that one if the sandbox's terminfo knows it, else xterm-256color,
// which every terminal emulator people use today understands.
func (s *Session) Terminal(ctx context.Context, term string) string {
	const fallback = "xterm-256color"
	if term == "" || strings.ContainsAny(term, "/ \t\n") {
		return fallback
	}
	code, err := s.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"infocmp", "--", term}})
	if err != nil || code != 0 {
		return fallback
	}
	return term
}

// Attach connects a terminal to the agent's tmux session until the user
// detaches (Ctrl-b d) or the agent exits. in must be in raw mode already.
func (s *Session) Attach(ctx context.Context, term string, in io.Reader, out io.Writer, size sandbox.TermSize, resize <-chan sandbox.TermSize) (int, error) {
	return s.Exec(ctx, sandbox.ExecSpec{
		Cmd:    []string{"tmux", "-u", "attach-session", "-t", TmuxSession},
		Env:    []string{"TERM=" + term, "LANG=C.UTF-8"},
		TTY:    true,
		Stdin:  in,
		Stdout: out,
		Size:   size,
		Resize: resize,
	})
}

// SendKeys types text into the agent's terminal; with enter it then
// presses Enter. Text is sent literally (tmux send-keys -l): key names in it
// are not interpreted.
func (s *Session) SendKeys(ctx context.Context, text string, enter bool) error {
	if text != "" {
		if _, err := s.Output(ctx, "tmux", "send-keys", "-t", TmuxSession, "-l", "--", text); err != nil {
			return err
		}
	}
	if enter {
		if _, err := s.Output(ctx, "tmux", "send-keys", "-t", TmuxSession, "Enter"); err != nil {
			return err
		}
	}
	return nil
}

// Capture returns the agent's screen as text (tmux capture-pane -p).
func (s *Session) Capture(ctx context.Context) (string, error) {
	return s.Output(ctx, "tmux", "capture-pane", "-p", "-t", TmuxSession)
}

// Size returns the agent's window size.
func (s *Session) Size(ctx context.Context) (sandbox.TermSize, error) {
	out, err := s.Output(ctx, "tmux", "display-message", "-p", "-t", TmuxSession, "#{window_width} #{window_height}")
	if err != nil {
		return sandbox.TermSize{}, err
	}
	var sz sandbox.TermSize
	if _, err := fmt.Sscan(out, &sz.Width, &sz.Height); err != nil {
		return sandbox.TermSize{}, fmt.Errorf("tmux window size %q: %w", strings.TrimSpace(out), err)
	}
	return sz, nil
}
