package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// The Incus e2e: the core (run → diff → merge, a destroyed copy, planted
// hooks, leftovers) and the isolation attempts with the real Claude Code
// and the scripted model, on Incus, chosen the way a user chooses it:
// AIRLOCK_ENGINE=incus. The agent image is built on Incus by `airlock image
// build`.

var incusShared struct {
	once    sync.Once
	ref     string
	gateway string
	err     error
}

// needIncus skips (or on CI fails) a test when Incus does not answer.
func needIncus(t testing.TB) {
	t.Helper()
	if shared.skip != "" {
		t.Skip("no container engine: ", shared.skip)
	}
	if os.Getuid() != 0 {
		t.Skip("the Incus e2e runs as root (Incus' socket is root's)")
	}
	testkit.Incus(t) // fails on CI when Incus does not answer
}

// incusImage builds the default image on Incus with `airlock image build`
// (fast when it is there), once, and finds the bridge's address.
func incusImage(t testing.TB) string {
	t.Helper()
	incusShared.once.Do(func() {
		inc, err := sandbox.NewIncus("")
		if err != nil {
			incusShared.err = err
			return
		}
		defer inc.Close()
		if incusShared.gateway, err = inc.HostAddress(context.Background()); err != nil {
			incusShared.err = err
			return
		}
		incusShared.ref, incusShared.err = buildImageOn(t, "incus")
	})
	if incusShared.err != nil {
		t.Fatal(incusShared.err)
	}
	return incusShared.ref
}

// gateway is where the env's engine's sandboxes reach the host: on Incus
// the bridge's address.
func (e *env) gateway() string {
	switch e.engine {
	case onIncus:
		return incusShared.gateway
	case onRootlessPodman, onKubernetes:
		// Pods reach the host at the node's address.
		return shared.hostAddr
	}
	return shared.gateway
}

// The core e2e on Incus.
func TestIncusCore(t *testing.T) {
	for name, body := range map[string]func(*testing.T, *env){
		"WriteCommitMerge":      incusWriteCommitMerge,
		"DestroyedCopy":         destroyedCopyLeavesUserRepoUnchanged,
		"PlantedHooks":          plantedHooksNeverRunOnHost,
		"UncommittedLeftovers":  uncommittedLeftovers,
		"ModelErrorFailsRun":    modelErrorFailsRun,
		"MergeRefusesDirtyTree": mergeRefusesDirtyTreeAndRmProtectsWork,
	} {
		t.Run(name, func(t *testing.T) { body(t, newEnvOn(t, onIncus)) })
	}
}

// incusWriteCommitMerge is the core run, and the run's instances were
// Incus', not Docker's.
func incusWriteCommitMerge(t *testing.T, e *env) {
	writeCommitMerge(t, e)
	r := e.runs()[0]
	if out, err := exec.Command("docker", "inspect", r.Container).CombinedOutput(); err == nil {
		t.Errorf("Docker knows the agent container %s; the run did not use Incus:\n%s", r.Container, out)
	}
	if r.Status != store.StatusMerged {
		t.Errorf("run status %s, want merged", r.Status)
	}
}

// The isolation attempts that need no test hosts, from inside a run on
// Incus: only loopback, no route, no engine socket, no proxy files, no real
// key, and the proxy refuses unlisted and forbidden destinations before
// dialling.
func TestIncusIsolation(t *testing.T) {
	e := newEnvOn(t, onIncus)
	srv, url := e.server(runScript("isolation", "sh attempts.sh > results.txt 2>&1; echo finished"))
	realKey := "sk-ant-api03-" + randHex(80)
	setAPIKey(e, realKey)
	attempts, vars, files := isolationAttemptsVia(t, e.gateway(), url)
	runAttempts(t, e, srv, realKey, attempts, vars, files)
}

// Incus: every command around a live run works (shell in tmux, tmux
// capture and send, attach and detach, stop, clean, start, kill, rm).
func TestIncusCommands(t *testing.T) {
	e := newEnvOn(t, onIncus)
	e.server(testkit.ChatScript())
	inc, err := sandbox.NewIncus("")
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Close()
	podmanCommands(t, &podmanCLI{
		t: t, repo: e.repo, podman: inc, env: e.environ(),
		try: func(args ...string) (string, error) {
			res := e.airlock(args...)
			if res.code != 0 {
				return res.stdout + res.stderr, fmt.Errorf("exit %d", res.code)
			}
			return res.stdout + res.stderr, nil
		},
		line: func(args ...string) string {
			return "AIRLOCK_ENGINE=incus " + shared.bin + " " + strings.Join(args, " ")
		},
	})
}

// The lifecycle around a run on Incus: resume, a persistent sandbox across
// stop and start, exec, cp and tmux, a run that outlives a killed airlock,
// ten runs at once. (Stop, kill and clean are in TestIncusCommands;
// TestStopKillClean's orphans are Docker's.)
func TestIncusLifecycle(t *testing.T) {
	for name, body := range map[string]func(*testing.T, *env){
		"Resume":            resumeContinuesConversation,
		"Persistent":        persistentContainerKeepsInstalledTool,
		"ExecCpTmux":        execCpTmux,
		"SurvivesKilledCLI": runSurvivesKilledAirlock,
		"TenRunsAtOnce":     tenRunsAtOnce,
	} {
		t.Run(name, func(t *testing.T) { body(t, newEnvOn(t, onIncus)) })
	}
}

// runAttempts commits the attempt scripts, runs the agent on them and checks
// each attempt's outcome, the audit log, and that only the proxy added the
// real key.
func runAttempts(t *testing.T, e *env, srv *testkit.Server, realKey string, attempts []attempt, vars *strings.Replacer, files map[string]string) {
	t.Helper()
	for name, content := range files {
		e.write(name, content)
	}
	e.git("add", ".")
	e.git("commit", "-qm", "isolation attempts")

	e.ok("run", "-y", "-m", "Try to get out.", "--name", "escape")
	r := e.runs()[0]
	ws := filepath.Join(e.state, "airlock", "runs", r.ID, "workspace")
	checkAttempts(t, attempts, vars, filepath.Join(ws, "results.txt"), auditRecords(t, e.state, r.ID))
	for _, q := range srv.Requests() {
		if q.APIKey() != realKey {
			t.Errorf("%s %s carried %q, want the real key (injected by the proxy)", q.Method, q.Path, q.APIKey())
		}
	}
}
