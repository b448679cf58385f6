package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
)

// prewarmWithin bounds one top-up of the warm pool: a few pairs of pods.
const prewarmWithin = 5 * time.Minute

// newPrewarmCmd is the detached process that tops up the engine's warm
// pool after a run started (startPrewarm): a run's own processes end with
// it, or return at once (run -d), and the pool takes seconds to fill.
func newPrewarmCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:    "prewarm RUN",
		Short:  "Make sandboxes like a run's in advance (Kubernetes' warm pool; started by run)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), prewarmWithin)
			defer cancel()
			return prewarm(ctx, f, args[0])
		},
	}
}

func prewarm(ctx context.Context, f *Factory, id string) error {
	caps, err := f.EngineCaps()
	if err != nil {
		return err
	}
	if caps.Warm == nil {
		return nil
	}
	st, err := f.Store()
	if err != nil {
		return err
	}
	r, err := st.Get(id)
	if err != nil {
		return err
	}
	if err := caps.Warm.Prewarm(ctx, r.Container); err != nil {
		return fmt.Errorf("warm pool after run %s: %w", id, err)
	}
	return nil
}

// startPrewarm starts `airlock prewarm RUN` in its own session, detached,
// its output in the run's watcher log, when the engine keeps a warm pool.
// A top-up that cannot start only costs the next run its head start.
func (f *Factory) startPrewarm(m *run.Manager, r *store.Run) {
	if m.Caps.Warm == nil || f.endpoint.Kubernetes.Warm <= 0 {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	logf, err := openWatchLog(m.Store, r.ID)
	if err != nil {
		return
	}
	defer logf.Close()
	cmd := exec.Command(exe, "prewarm", r.ID, "--engine", f.endpoint.Kind)
	cmd.Dir = r.Project
	cmd.Env = f.Environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		cmd.Process.Release()
	}
}
