package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// newWatchCmd is the detached watcher `run -d` leaves behind: it waits for
// the run to end, brings its work back and sends its notifications, so
// none of that waits for the user's next command.
func newWatchCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:    "watch RUN",
		Short:  "Wait for a detached run, collect it and notify (started by run -d)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return watchRun(cmd.Context(), f, args[0])
		},
	}
}

func watchRun(ctx context.Context, f *Factory, id string) error {
	st, err := f.Store()
	if err != nil {
		return err
	}
	r, err := st.Get(id)
	if err != nil {
		return err
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	events, stop := context.WithCancel(ctx)
	defer stop()
	go m.NotifyEvents(events, r)
	r, err = m.Wait(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "Run %s %s\n", r.ID, r.Status)
	return nil
}

// watchLog is the watcher's output, in the run's directory rather than its
// log directory: the sandbox can write there.
const watchLog = "watch.log"

// startWatcher starts `airlock watch RUN` in its own session, detached
// from the terminal, with its output in the run's directory. A watcher
// that cannot start only costs the notifications: `ls`, `wait` and the
// other commands still record the run's end.
func (f *Factory) startWatcher(m *run.Manager, r *store.Run) {
	exe, err := os.Executable()
	if err != nil {
		f.errorf("warning: no watcher for %s: %v", r.ID, err)
		return
	}
	logf, err := os.OpenFile(filepath.Join(m.Store.RunDir(r.ID), watchLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		f.errorf("warning: no watcher for %s: %v", r.ID, err)
		return
	}
	defer logf.Close()
	cmd := exec.Command(exe, "watch", r.ID)
	cmd.Dir = r.Project
	cmd.Env = f.Environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		f.errorf("warning: no watcher for %s: %v", r.ID, err)
		return
	}
	cmd.Process.Release()
}

// bellFor is the terminal bell, for people watching a terminal.
func bellFor(f *Factory) string {
	if f.IO.StdoutTTY {
		return "\a"
	}
	return ""
}

// bell rings the terminal's bell when an attached run ends.
func (f *Factory) bell() {
	if b := bellFor(f); b != "" {
		fmt.Fprint(f.IO.ErrOut, b)
	}
}

// finishedLine is the line an attached user sees when a run ends.
func finishedLine(r *store.Run) string {
	s := fmt.Sprintf("Run %s %s", r.ID, r.Status)
	if r.Error != "" {
		s += ": " + untrusted.Text(r.Error)
	}
	return s + "\n"
}
