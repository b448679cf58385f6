package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

func newAttachCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "attach [RUN]",
		Short: "Attach your terminal to a running interactive session",
		Long: `Attach your terminal to an interactive run's agent (airlock shell).
RUN defaults to this project's latest running session. Ctrl-b d detaches
again and leaves the agent running.

Headless runs have no terminal: follow them with airlock logs -f.`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			r, err := f.resolveSession(ctx, firstArg(args))
			if err != nil {
				return err
			}
			m, err := f.manager()
			if err != nil {
				return err
			}
			return f.attachRun(ctx, m, r)
		},
	}
}

// resolveSession is resolveRun, except that without RUN it prefers the
// project's latest running interactive run.
func (f *Factory) resolveSession(ctx context.Context, ref string) (*store.Run, error) {
	return f.resolvePreferring(ctx, ref, false, func(r *store.Run) bool {
		return r.Kind == run.KindShell && r.Status == store.StatusRunning
	})
}

// resolvePreferring is resolveRun, except that without RUN it first takes
// the project's latest run that prefer picks, if there is one.
func (f *Factory) resolvePreferring(ctx context.Context, ref string, allProjects bool, prefer func(*store.Run) bool) (*store.Run, error) {
	if ref == "" {
		st, err := f.Store()
		if err != nil {
			return nil, err
		}
		project, err := f.project(ctx)
		if err != nil {
			return nil, err
		}
		runs, err := st.List()
		if err != nil {
			return nil, err
		}
		for _, r := range runs {
			if r.Project == project && prefer(r) {
				return r, nil
			}
		}
	}
	return f.resolveRun(ctx, ref, allProjects)
}

// attachRun connects the user's terminal to the run's tmux session until
// they detach or the agent exits, then says what happened and what next.
func (f *Factory) attachRun(ctx context.Context, m *run.Manager, r *store.Run) error {
	if err := run.RequireShell(r); err != nil {
		return err
	}
	s, err := m.Session(ctx, r)
	if err != nil {
		return err
	}
	in, ok := f.IO.In.(*os.File)
	if !ok || !f.IO.StdinTTY {
		return fmt.Errorf("attaching to %s needs a terminal; without one, use `airlock tmux capture %s` and `airlock tmux send %s TEXT`", r.ID, r.ID, r.ID)
	}
	if err := s.WaitTmux(ctx, 30*time.Second); err != nil {
		return err
	}
	termName := s.Terminal(ctx, f.Getenv("TERM"))
	fd := int(in.Fd())
	size := terminalSize(fd)
	resize := make(chan sandbox.TermSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-winch:
			}
			// Only the latest size matters: replace a pending one.
			select {
			case <-resize:
			default:
			}
			resize <- terminalSize(fd)
		}
	}()
	old, err := term.MakeRaw(fd)
	if err != nil {
		return fmt.Errorf("attach to %s: put the terminal in raw mode: %w", r.ID, err)
	}
	_, attachErr := s.Attach(ctx, termName, in, f.IO.Out, size, resize)
	term.Restore(fd, old)
	if attachErr != nil && ctx.Err() == nil {
		return fmt.Errorf("attach to %s: %w", r.ID, attachErr)
	}
	return f.afterAttach(ctx, m, s)
}

// afterAttach tells a detached user how to come back, or, when the agent
// has exited, waits for the run to finish and shows its outcome.
func (f *Factory) afterAttach(ctx context.Context, m *run.Manager, s *run.Session) error {
	r := s.Run
	if ctx.Err() == nil {
		code, err := s.Exec(ctx, sandbox.ExecSpec{Cmd: []string{"tmux", "has-session", "-t", run.TmuxSession}})
		if err == nil && code == 0 {
			fmt.Fprintf(f.IO.ErrOut, "Detached from %s; the agent keeps running.\nAttach again: airlock attach %s\n", r.ID, r.ID)
			return nil
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(f.IO.ErrOut, "\nLeft %s running. Attach again: airlock attach %s\n", r.ID, r.ID)
		return &ExitError{Code: ExitCanceled}
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	r, err := m.Wait(wctx, r)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if r == nil || !r.Status.Finished() {
		fmt.Fprintf(f.IO.ErrOut, "The agent's session ended; the run is still finishing (see `airlock ls`).\n")
		return nil
	}
	fmt.Fprintf(f.IO.ErrOut, "Run %s: %s\n", r.ID, r.Status)
	if r.Here {
		fmt.Fprintf(f.IO.ErrOut, "The agent worked in %s directly: see `git status` there.\n", r.Project)
		return nil
	}
	fmt.Fprint(f.IO.ErrOut, nextSteps(r))
	return nil
}

func terminalSize(fd int) sandbox.TermSize {
	w, h, err := term.GetSize(fd)
	if err != nil || w <= 0 || h <= 0 {
		return sandbox.TermSize{Width: 80, Height: 24}
	}
	return sandbox.TermSize{Width: uint(w), Height: uint(h)}
}
