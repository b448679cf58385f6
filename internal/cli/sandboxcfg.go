package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/credentials"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// runMounts checks the user's sandbox.mounts against what a sandbox must
// never get (run.CheckMount), before anything is asked or made; an entry
// refused is named with the file and line that set it.
func (f *Factory) runMounts(ctx context.Context, res *config.Resolved, project string) ([]sandbox.Mount, error) {
	entries := res.Config.Sandbox.Mounts
	if len(entries) == 0 {
		return nil, nil
	}
	rules := run.MountRules{Project: project, Home: f.Getenv("HOME")}
	if rules.Home == "" {
		rules.Home, _ = os.UserHomeDir()
	}
	var err error
	if rules.GitDirs, err = workspace.GitDirs(ctx, project); err != nil {
		return nil, err
	}
	if rules.Credentials, err = credentials.DefaultPath(f.Getenv); err != nil {
		return nil, err
	}
	st, err := f.Store()
	if err != nil {
		return nil, err
	}
	rules.State = st.Dir()
	rules.EngineSockets = append(sandbox.EngineSockets(f.Getenv("DOCKER_HOST")),
		"/var/lib/incus", "/run/incus", "/var/lib/incus/unix.socket")
	if dir := f.Getenv("INCUS_DIR"); filepath.IsAbs(dir) {
		rules.EngineSockets = append(rules.EngineSockets, dir)
	}
	var out []sandbox.Mount
	for _, e := range entries {
		m, err := run.CheckMount(e, rules)
		if err != nil {
			return nil, fmt.Errorf("%s: sandbox.mounts: %w", res.EntryFrom("sandbox.mounts", e), err)
		}
		out = append(out, m)
	}
	return out, nil
}

// describeMounts shows a run's mounts with the policy, before y/N.
func describeMounts(mounts []sandbox.Mount) string {
	var b strings.Builder
	for _, m := range mounts {
		mode := "read-only"
		if !m.ReadOnly {
			mode = "read-write"
		}
		fmt.Fprintf(&b, "  mount  %-32s %s (%s)\n", m.Target, m.Source, mode)
	}
	return b.String()
}

// maxSetupLog is how much of the end of a setup log `logs --setup` shows.
const maxSetupLog = 4 << 20

// showSetupLog prints the output of a run's setup commands. The container
// wrote it: no links, its last maxSetupLog bytes, made safe to print.
func showSetupLog(f *Factory, m *run.Manager, r *store.Run) error {
	if len(r.Setup) == 0 {
		fmt.Fprintf(f.IO.ErrOut, "Run %s has no setup commands.\n", r.ID)
		return nil
	}
	file, _, err := untrusted.OpenTail(m.SetupLogPath(r), maxSetupLog)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(f.IO.ErrOut, "The setup of run %s has not written anything yet.\n", r.ID)
		return nil
	case err != nil:
		return fmt.Errorf("read the setup log of run %s: %w", r.ID, err)
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, maxSetupLog))
	if err != nil {
		return fmt.Errorf("read the setup log of run %s: %w", r.ID, err)
	}
	_, err = io.WriteString(f.IO.Out, untrusted.Text(string(data)))
	return err
}

// parsePorts reads -p's values.
func parsePorts(specs []string) ([]run.Port, error) {
	var out []run.Port
	for _, s := range specs {
		p, err := run.ParsePort(s)
		if err != nil {
			return nil, flagErrorf("%v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// openPorts are a run's forwarded ports while it runs (they close with
// it), for ls.
func openPorts(r *store.Run) string {
	if r.Status != store.StatusRunning {
		return ""
	}
	return strings.Join(r.Ports, ", ")
}

// anyPorts reports whether ls shows a PORTS column.
func anyPorts(runs []*store.Run) bool {
	for _, r := range runs {
		if openPorts(r) != "" {
			return true
		}
	}
	return false
}

// describeSetup shows a run's setup commands with the policy, before y/N:
// they run behind it.
func describeSetup(res *config.Resolved) string {
	var b strings.Builder
	for _, c := range res.Config.Sandbox.Setup {
		fmt.Fprintf(&b, "  setup  %-32s %s\n", untrusted.Line(c), res.EntryFrom("sandbox.setup", c))
	}
	return b.String()
}
