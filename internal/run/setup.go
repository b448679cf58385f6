package run

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// Setup commands (sandbox.setup, a prompt's setup:) run in the agent's
// container before the agent: the same user, /workspace, environment and
// egress proxy, because they are the same command line — setupScript runs
// each, then execs the agent. Their output goes to the run's log
// directory (SetupLogPath, `airlock logs --setup`).
//
// Whether they completed is the host's record (store.Run.SetupDone), and
// its evidence is the proxy's meter, not anything the container writes:
// the agent only starts once every command has succeeded, so a leg in
// which the proxy forwarded a model request had its setup done. The host
// then writes setupDoneFile in a directory the container mounts
// read-only, and setupScript skips the commands when a persistent run's
// container is started again. (A sandbox can only fool this about itself:
// skip or repeat its own setup.)
const (
	containerSetupDir = "/airlock/setup"
	setupDir          = "setup"
	setupDoneFile     = "done"
	setupLog          = "setup.log"
	// setupStatus is the script's claim of which command failed ("I CODE",
	// 1-based), read as untrusted and believed only when CODE is the exit
	// code the engine reports.
	setupStatus = "setup.status"
)

// setupScript runs the setup commands, given as positional parameters
// after the setup directory, the log directory and their number, and then
// execs the rest (the agent's command). Each command is a /bin/sh -c line
// of its own, its input /dev/null; the first that fails ends the container
// with its exit status, and the agent never starts.
const setupScript = `state=$1 logs=$2 n=$3
shift 3
if [ -e "$state/done" ]; then
  shift "$n"
  exec "$@"
fi
i=0
while [ "$i" -lt "$n" ]; do
  i=$((i+1))
  printf '$ %s\n' "$1" >>"$logs/setup.log"
  /bin/sh -c "$1" </dev/null >>"$logs/setup.log" 2>&1
  code=$?
  if [ "$code" -ne 0 ]; then
    printf 'airlock: setup command %d exited with status %d; the agent was not started\n' "$i" "$code" >>"$logs/setup.log"
    printf '%d %d\n' "$i" "$code" >"$logs/setup.status"
    exit "$code"
  fi
  shift
done
printf 'ok\n' >"$logs/setup.status"
exec "$@"`

// withSetup puts the run's setup commands in front of cmd, and returns the
// mount of the host's setup directory they need; with no setup commands,
// cmd as it is.
func (m *Manager) withSetup(r *store.Run, cmd []string) ([]string, []sandbox.Mount, error) {
	if len(r.Setup) == 0 {
		return cmd, nil, nil
	}
	dir := filepath.Join(m.Store.RunDir(r.ID), setupDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("prepare the setup of run %s: %w", r.ID, err)
	}
	out := []string{"/bin/sh", "-c", setupScript, "airlock-setup", containerSetupDir, containerLogDir, strconv.Itoa(len(r.Setup))}
	out = append(append(out, r.Setup...), cmd...)
	return out, []sandbox.Mount{{Source: dir, Target: containerSetupDir, ReadOnly: true}}, nil
}

// SetupLogPath is the setup commands' output on the host (the container
// writes it: read it as untrusted).
func (m *Manager) SetupLogPath(r *store.Run) string {
	return filepath.Join(m.Store.RunDir(r.ID), "log", setupLog)
}

// setupOutcome says, once a leg of the run has ended, whether its setup is
// now known done, or else why the run failed in its setup ("" if not).
func (m *Manager) setupOutcome(r *store.Run, exitCode int, mt egress.Meter) (done bool, failure string) {
	if len(r.Setup) == 0 || r.SetupDone {
		return false, ""
	}
	if mt.ModelRequests > 0 {
		return true, ""
	}
	if exitCode <= 0 {
		return false, ""
	}
	data, err := untrusted.ReadFile(filepath.Join(m.Store.RunDir(r.ID), "log", setupStatus), 64)
	if err != nil {
		return false, ""
	}
	var i, code int
	if n, _ := fmt.Sscanf(strings.TrimSpace(string(data)), "%d %d", &i, &code); n != 2 || i < 1 || i > len(r.Setup) || code != exitCode {
		return false, ""
	}
	return false, fmt.Sprintf("setup command %d of %d, %q, exited with status %d, so the agent was not started (its output: airlock logs --setup %s)",
		i, len(r.Setup), untrusted.Line(r.Setup[i-1]), code, r.ID)
}

// markSetupDone records, where the container can read it but not write
// it, that a persistent run's setup need not run again.
func (m *Manager) markSetupDone(r *store.Run) {
	dir := filepath.Join(m.Store.RunDir(r.ID), setupDir)
	os.WriteFile(filepath.Join(dir, setupDoneFile), nil, 0o644)
}
