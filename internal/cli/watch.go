package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
	"github.com/airlock-dev/airlock/internal/watchd"
)

// newWatcherCmd is the detached watcher `run -d` leaves behind: it waits for
// the run to end, brings its work back and sends its notifications, so
// none of that waits for the user's next command. One watcher serves every
// detached run started the same way (see watchd): later runs are offered
// to it rather than each starting a process of its own. It is named
// `watcher` so that `watch` is the user's; a watcher started by an older
// binary as `watch RUN` goes on serving its runs, as it never starts
// itself again by name.
func newWatcherCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:    "watcher RUN",
		Short:  "Wait for detached runs, collect them and notify (started by run -d)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return watchRuns(cmd.Context(), f, args[0])
		},
	}
}

// joinPatience is how long a new watcher keeps trying to hand its run to
// one that holds the place (it is starting, or closing down) before it
// serves the run itself; offerPatience is the same for `run -d`, which
// then starts a watcher of its own.
const (
	joinPatience  = 5 * time.Second
	offerPatience = time.Second
)

// watchRuns supervises run id, and every run offered to it, until none is
// left. When another watcher of the same place already serves, the run is
// handed to it instead; when the place cannot be used at all, this process
// supervises its run alone, as every watcher once did.
func watchRuns(ctx context.Context, f *Factory, id string) error {
	st, err := f.Store()
	if err != nil {
		return err
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	place, err := f.watcherPlace(st)
	if err != nil {
		fmt.Fprintf(f.IO.ErrOut, "airlock watcher: supervising %s alone: %v\n", id, err)
		return watchRun(ctx, m, id, f.IO.ErrOut)
	}
	deadline := time.Now().Add(joinPatience)
	for {
		srv, err := watchd.Claim(place)
		if err == nil {
			if err := srv.Serve(f.watchHandler(ctx, st, m, id), id); err != nil {
				// Its own run failed the check the offered ones pass:
				// supervised alone, its error is watchRun's to say.
				return watchRun(ctx, m, id, f.IO.ErrOut)
			}
			return nil
		}
		if !errors.Is(err, watchd.ErrBusy) {
			fmt.Fprintf(f.IO.ErrOut, "airlock watcher: supervising %s alone: %v\n", id, err)
			break
		}
		o, err := watchd.OfferOnce(ctx, place, id)
		if err == nil {
			fmt.Fprintf(f.IO.ErrOut, "Run %s is supervised by the shared watcher, process %d\n", id, o.PID)
			return nil
		}
		if errors.Is(err, watchd.ErrRefused) || time.Now().After(deadline) {
			fmt.Fprintf(f.IO.ErrOut, "airlock watcher: supervising %s alone: %v\n", id, err)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
	return watchRun(ctx, m, id, f.IO.ErrOut)
}

// watchHandler supervises each run of a shared watcher as a watcher of its
// own would, with its messages in its own watch.log. The process's own
// output (its standard error: the first run's watch.log, where `run -d`
// started it) gets only what concerns no one run, such as refused offers.
func (f *Factory) watchHandler(ctx context.Context, st *store.Store, m *run.Manager, first string) watchd.Handler {
	return watchd.Handler{
		Check: func(id string) error { return watchable(st, id) },
		Supervise: func(id string) {
			var out io.Writer = f.IO.ErrOut
			if logf, err := openWatchLog(st, id); err == nil {
				defer logf.Close()
				out = logf
			} else {
				fmt.Fprintf(f.IO.ErrOut, "airlock watcher: run %s: %v\n", id, err)
			}
			if id != first {
				fmt.Fprintf(out, "Supervised by the shared watcher, process %d (its own messages are in run %s's %s)\n", os.Getpid(), first, watchLog)
			}
			rm := *m
			rm.Progress = out
			if err := watchRun(ctx, &rm, id, out); err != nil {
				fmt.Fprintf(out, "airlock: %s\n", untrusted.Text(err.Error()))
			}
		},
		Log: func(format string, args ...any) {
			fmt.Fprintf(f.IO.ErrOut, "airlock watcher: "+format+"\n", args...)
		},
	}
}

// watchable checks an ID offered to a shared watcher. It comes from a
// socket only this user can reach, and is still taken for what it is, a
// string: it must be a run ID (so also a plain file name) naming a run of
// this store that is not removed.
func watchable(st *store.Store, id string) error {
	if err := validRunID(id); err != nil {
		return err
	}
	r, err := st.Get(id)
	if err != nil {
		return err
	}
	switch {
	case r.ID != id:
		return fmt.Errorf("the record of run %s names run %q", id, r.ID)
	case r.Removed():
		return fmt.Errorf("run %s is removed", id)
	}
	return nil
}

// validRunID checks id could be a run ID: one plain file name of
// printable characters, of reasonable length. (Whether a run has it is
// the store's to say.)
func validRunID(id string) error {
	if id == "" || len(id) > 128 || id[0] == '.' || strings.ContainsRune(id, '/') || untrusted.Line(id) != id {
		return fmt.Errorf("%q is not a run ID", untrusted.Line(id))
	}
	return nil
}

// watchRun supervises one run to its end, as its watcher: m.Wait (which
// supervises its budget, records its end and brings its work back) and
// its "waiting" notifications.
func watchRun(ctx context.Context, m *run.Manager, id string, out io.Writer) error {
	r, err := m.Store.Get(id)
	if err != nil {
		return err
	}
	events, stop := context.WithCancel(ctx)
	defer stop()
	go m.NotifyEvents(events, r)
	m.ServePorts(events, r, out) // until the run has ended
	r, err = m.Wait(ctx, r)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Run %s %s\n", r.ID, r.Status)
	return nil
}

// watchLog is the watcher's output, in the run's directory rather than its
// log directory: the sandbox can write there.
const watchLog = "watch.log"

func openWatchLog(st *store.Store, id string) (*os.File, error) {
	return os.OpenFile(filepath.Join(st.RunDir(id), watchLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
}

// watcherPlace is where the watchers this process would start meet: a
// directory of the store that no sandbox mounts, and a key over all that
// decides how a watcher supervises a run: the airlock binary (path and
// file identity), the store, the engine (kind, address and settings),
// the user and the environment (but for the shell's own bookkeeping,
// which differs from one directory or shell level to the next and
// changes nothing). A run is only ever offered to a watcher that would
// supervise it exactly as one of its own.
func (f *Factory) watcherPlace(st *store.Store) (watchd.Place, error) {
	if _, err := f.Engine(); err != nil {
		return watchd.Place{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return watchd.Place{}, err
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return watchd.Place{}, err
	}
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return watchd.Place{}, fmt.Errorf("no file identity for %s", exe)
	}
	h := sha256.New()
	fmt.Fprintf(h, "exe %q %d %d %d %d\n", exe, sys.Dev, sys.Ino, fi.Size(), fi.ModTime().UnixNano())
	fmt.Fprintf(h, "store %q\n", st.Dir())
	fmt.Fprintf(h, "engine %q %q %q %q %t\n", f.endpoint.Kind, f.endpoint.Host, f.endpoint.Incus.Pool, f.endpoint.Incus.Network, f.endpoint.Incus.Nesting)
	fmt.Fprintf(h, "kubernetes %q\n", fmt.Sprintf("%+v", f.endpoint.Kubernetes))
	fmt.Fprintf(h, "user %d %d\n", f.UID, f.GID)
	env := slices.Clone(f.Environ())
	slices.Sort(env)
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "PWD", "OLDPWD", "SHLVL", "_":
			continue
		}
		fmt.Fprintf(h, "env %q\n", kv)
	}
	dir := filepath.Join(st.Dir(), "watch")
	if err := watchd.PrivateDir(dir); err != nil {
		return watchd.Place{}, err
	}
	return watchd.Place{Dir: dir, Key: hex.EncodeToString(h.Sum(nil)[:16])}, nil
}

// startWatcher hands the run to the shared watcher of its kind, or, when
// none takes it, starts `airlock watcher RUN` in its own session, detached
// from the terminal, with its output in the run's directory. A watcher
// that cannot start only costs the notifications: `ls`, `wait` and the
// other commands still record the run's end.
func (f *Factory) startWatcher(m *run.Manager, r *store.Run) {
	if place, err := f.watcherPlace(m.Store); err == nil {
		if _, err := watchd.Offer(context.Background(), place, r.ID, offerPatience); err == nil {
			return
		}
	}
	exe, err := os.Executable()
	if err != nil {
		f.errorf("warning: no watcher for %s: %v", r.ID, err)
		return
	}
	logf, err := openWatchLog(m.Store, r.ID)
	if err != nil {
		f.errorf("warning: no watcher for %s: %v", r.ID, err)
		return
	}
	defer logf.Close()
	// The engine the run was made on, named: a watcher left to choose
	// would not see the user's --engine.
	cmd := exec.Command(exe, "watcher", r.ID, "--engine", f.endpoint.Kind)
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
