package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// StopReasonUser is the StopReason of a run a person stopped or killed.
const StopReasonUser = "user"

// egressRecord is the run's egress as it was started, without credentials,
// so that `start` brings a persistent run back under the policy the user
// accepted. It lives in the run's directory, outside every mount.
const egressRecord = "egress.json"

// saveEgress records a run's egress for a later `start`.
func saveEgress(dir string, eg Egress) error {
	eg.Auth = agent.APIAuth{}
	data, err := json.Marshal(eg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, egressRecord), data, 0o600); err != nil {
		return fmt.Errorf("record the run's egress: %w", err)
	}
	return nil
}

func loadEgress(dir string) (Egress, error) {
	var eg Egress
	data, err := os.ReadFile(filepath.Join(dir, egressRecord))
	if err != nil {
		return eg, err
	}
	if err := json.Unmarshal(data, &eg); err != nil {
		return eg, fmt.Errorf("%s: %w", filepath.Join(dir, egressRecord), err)
	}
	return eg, nil
}

// restartScript makes a persistent container's command safe to run again:
// an agent refuses to start a session that already exists (Claude Code:
// "Session ID … is already in use"), so once the session's log is in the
// home the container runs the agent's command for resuming the session
// instead. Its arguments are the log, the length n of the first command,
// the first command and the resuming one: positional parameters, never
// parsed as shell syntax.
const restartScript = `log=$1 n=$2
shift 2
i=0
resume=
[ -e "$log" ] && resume=1
for a do
  shift
  if [ "$i" -lt "$n" ]; then
    [ -z "$resume" ] && set -- "$@" "$a"
  else
    [ -n "$resume" ] && set -- "$@" "$a"
  fi
  i=$((i+1))
done
exec "$@"`

// restartable wraps a persistent run's agent command in restartScript:
// cmd while its session has no log yet (or, for an agent whose sessions
// airlock cannot name, no session directory), resumed after.
func restartable(ag agent.Agent, cmd, resumed []string, sessionID string) []string {
	rel := ag.SessionLog(containerWorkspace, sessionID)
	if rel == "" {
		rel = ag.SessionDir()
	}
	if rel == "" {
		// The agent keeps no session to continue: it starts afresh.
		return cmd
	}
	argv := []string{"/bin/sh", "-c", restartScript, "airlock-restart", containerHome + "/" + rel, strconv.Itoa(len(cmd))}
	return append(append(argv, cmd...), resumed...)
}

// Restart brings a finished persistent run back: the same container, so
// its file system (tools the agent installed) is as it was left, a new
// egress proxy under the run's recorded policy and the credentials given
// (fresh ones, never stored), and the agent continuing its conversation.
// A headless agent is given prompt, or the run's prompt again if prompt is
// empty. Its work is collected again when it stops.
func (m *Manager) Restart(ctx context.Context, r *store.Run, auth agent.APIAuth, prompt string) (*store.Run, error) {
	if err := m.Engine.Ping(ctx); err != nil {
		return nil, err
	}
	r, err := m.Collect(ctx, r)
	if err != nil {
		return nil, err
	}
	switch {
	case r.Removed():
		return nil, fmt.Errorf("cannot start run %s: it was removed", r.ID)
	case !r.Persistent:
		return nil, fmt.Errorf("cannot start run %s: it is not persistent, so its container is not kept (start runs with --persistent to keep them); continue its conversation in a new run with --resume %s", r.ID, r.ID)
	case !r.Status.Finished():
		return nil, fmt.Errorf("cannot start run %s: it is already %s", r.ID, r.Status)
	}
	if _, err := m.Engine.Inspect(ctx, r.Container); errors.Is(err, sandbox.ErrNotFound) {
		return nil, fmt.Errorf("cannot start run %s: its container %s no longer exists (removed outside airlock); continue its conversation in a new run with --resume %s", r.ID, r.Container, r.ID)
	} else if err != nil {
		return nil, err
	}
	dir := m.Store.RunDir(r.ID)
	eg, err := loadEgress(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot start run %s: its egress policy was not recorded: %w", r.ID, err)
	}
	eg.Auth = auth
	if err := resolveInjections(ctx, m.ResolveSecret, eg.Inject); err != nil {
		return nil, fmt.Errorf("cannot start run %s: %w", r.ID, err)
	}
	if (eg.Cloud == nil) != (auth.Cloud == nil) {
		return nil, fmt.Errorf("cannot start run %s: it was started with other model credentials (%s); set the same provider's variables again", r.ID, cloudName(r.Cloud))
	}
	if eg.Cloud != nil {
		if r.Cloud == nil || m.CloudCredentials == nil {
			return nil, fmt.Errorf("cannot start run %s: its cloud credentials were not recorded", r.ID)
		}
		if eg.Cloud.Credentials, err = m.CloudCredentials(ctx, r); err != nil {
			return nil, fmt.Errorf("cannot start run %s: %w", r.ID, err)
		}
	}
	if prompt != "" {
		// In place: the container bind-mounts this very file.
		if err := os.WriteFile(filepath.Join(dir, "prompt.md"), []byte(prompt), 0o644); err != nil {
			return nil, fmt.Errorf("start run %s: %w", r.ID, err)
		}
	}
	if err := rotateLogs(filepath.Join(dir, "log")); err != nil {
		return nil, fmt.Errorf("start run %s: %w", r.ID, err)
	}
	// A new leg has a new budget: its own deadline, and a fresh meter.
	if err := os.Rename(m.MeterPath(r), m.MeterPath(r)+".prev"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("start run %s: %w", r.ID, err)
	}
	if r, err = m.Store.Update(r.ID, func(r *store.Run) error {
		r.Deadline = time.Time{}
		if d, err := time.ParseDuration(r.Timeout); err == nil && d > 0 {
			r.Deadline = m.now().Add(d)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	uid, gid := User(m.UID, m.GID)
	sb, err := m.sandboxSpec(r, eg, sandbox.Spec{Name: r.Container}, nil, uid, gid)
	if err != nil {
		return nil, err
	}
	if _, copies := m.Engine.(mountSyncer); copies {
		// The stopped sandbox's files came home (the engine syncs them
		// before the next leg): its out directory must not hand this
		// leg an earlier leg's bundle, and the copy came with a minimal
		// git configuration. The next leg starts from what is here now.
		sb.AgentReady = func(ctx context.Context) error {
			m.clearOut(r)
			if r.Here {
				return nil
			}
			return workspace.RestoreIdentity(ctx, r.Project, filepath.Join(dir, "workspace"))
		}
	}
	m.progress("Starting the egress proxy (%s) and container %s again…", egressSummary(eg), r.Container)
	_, err = m.Engine.RestartSandbox(ctx, sb)
	m.removeSecrets(r)
	if err != nil {
		return nil, fmt.Errorf("start the sandbox of run %s again: %w", r.ID, err)
	}
	return m.Store.Update(r.ID, func(r *store.Run) error {
		r.Status = store.StatusRunning
		r.StartedAt = m.now()
		r.FinishedAt = time.Time{}
		r.ExitCode = nil
		r.Error = ""
		r.StopRequested = false
		r.StopReason = ""
		r.Harvested = false
		r.HarvestError = ""
		r.HarvestWarning = ""
		return nil
	})
}

// rotateLogs moves the previous leg's transcript and standard error aside (agent.jsonl becomes agent.jsonl.1, then .2, …), so the
// new leg is summarised on its own and nothing of the old one is lost.
func rotateLogs(dir string) error {
	n := 1
	for ; ; n++ {
		if _, err := os.Lstat(filepath.Join(dir, agentLog+"."+strconv.Itoa(n))); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	for _, name := range []string{agentLog, agentStderr, shellExitFile} {
		err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, name+"."+strconv.Itoa(n)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Kill stops a running agent at once (no grace period); its work so far is
// kept and harvested, as with Stop.
func (m *Manager) Kill(ctx context.Context, r *store.Run) (*store.Run, error) {
	if r.Status.Finished() {
		return r, nil
	}
	r, err := m.Store.Update(r.ID, func(r *store.Run) error {
		if r.Status == store.StatusRunning && !r.StopRequested {
			r.StopRequested = true
			r.StopReason = StopReasonUser
			r.Error = "killed by the user"
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m.Stop(ctx, r, 0)
}

// Active lists the project's runs whose agent is running, for `stop --all`
// and `kill --all`.
func (m *Manager) Active(ctx context.Context, project string) ([]*store.Run, error) {
	runs, err := m.Store.List()
	if err != nil {
		return nil, err
	}
	var out []*store.Run
	for _, r := range runs {
		if r.Project != project || r.Removed() || r.Status.Finished() {
			continue
		}
		cur, err := m.Reconcile(ctx, r)
		if err != nil {
			return nil, err
		}
		if cur.Status == store.StatusRunning {
			out = append(out, cur)
		}
	}
	return out, nil
}
