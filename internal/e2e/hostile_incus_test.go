package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// The hostile-sandbox attacks only Incus has: on Incus the instance's init
// is airlock's own, running in the sandbox as the container's root, and
// the host takes the agent's exit status and output from the init's record
// in the instance. The agent tries to forge that record and the output, to
// signal, stop or read the init, to use the init binary's root operations,
// and to reach Incus itself (the guest API, the host's socket) or change
// its own limits. Every attempt must fail, and the host must report the
// real exit status.
const incusAttack = `
try() { name=$1; shift; if "$@" >/tmp/o 2>&1; then echo "$name: OPEN $(head -c 300 /tmp/o | tr '\n' ' ')"; else echo "$name: blocked $(head -c 300 /tmp/o | tr '\n' ' ')"; fi; }
try "forge the exit record" sh -c 'echo "{\"code\":42,\"finished\":\"2026-01-01T00:00:00Z\"}" > /.airlock-incus/exit'
try "list the init's state" ls /.airlock-incus
try "move the init's state away" mv /.airlock-incus /.airlock-incus-gone
try "forge the output" sh -c 'echo FORGED-OUTPUT >> /.airlock-incus/output'
try "plant a state directory" mkdir /.airlock-incus/new
try "signal the init to kill" kill -USR1 1
try "stop the init" kill -TERM 1
try "read the init's environment" cat /proc/1/environ
try "the init's kill operation" /airlock/bin/airlock __incus-init kill
try "the init's run as another user" /airlock/bin/airlock __incus-init run 1:1 / -- id
try "replace the airlock binary" sh -c 'echo x > /airlock/bin/airlock'
try "the Incus guest API" test -e /dev/incus/sock
try "the host's Incus socket" sh -c 'test -e /var/lib/incus/unix.socket || test -e /run/incus/unix.socket'
try "raise the memory limit" sh -c 'echo 99999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes'
try "raise the pids limit" sh -c 'echo max > /sys/fs/cgroup/pids/pids.max'
try "TCP to the bridge" python3 -c 'import socket; socket.create_connection(("{GW}", 8443), 3)'
`

func TestHostileIncusInit(t *testing.T) {
	e := newEnvOn(t, onIncus)
	e.server(runScript("incus-init", "sh incus-attack.sh > results.txt 2>&1; echo finished"))
	e.write("incus-attack.sh", strings.ReplaceAll(incusAttack, "{GW}", e.gateway()))
	e.git("add", ".")
	e.git("commit", "-qm", "attack")

	e.ok("run", "-y", "-m", "Forge your exit status.", "--name", "forge")
	r := e.runs()[0]
	if r.Status != store.StatusSucceeded {
		t.Errorf("run status %s, want succeeded", r.Status)
	}
	data, err := os.ReadFile(filepath.Join(e.state, "airlock", "runs", r.ID, "workspace", "results.txt"))
	if err != nil {
		t.Fatalf("no results from the sandbox: %v", err)
	}
	results := string(data)
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(results), "\n") {
		name, verdict, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n++
		if !strings.HasPrefix(verdict, "blocked") {
			t.Errorf("%s: the agent succeeded: %s", name, verdict)
		} else {
			t.Logf("%s: %s", name, verdict)
		}
	}
	if n != strings.Count(incusAttack, "\ntry ") {
		t.Fatalf("%d verdicts for %d attempts:\n%s", n, strings.Count(incusAttack, "\ntry "), results)
	}

	// The host's view: the real exit status, the real output.
	eng, err := e.sandboxEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	st, err := eng.Inspect(context.Background(), r.Container)
	if err != nil {
		t.Fatalf("inspect the agent's instance: %v", err)
	}
	if st.Status != sandbox.StatusExited || st.ExitCode != 0 {
		t.Errorf("the agent's instance: %s, exit %d; want exited 0 (not the forged 42)", st.Status, st.ExitCode)
	}
	var logs bytes.Buffer
	if err := eng.Logs(context.Background(), r.Container, &logs); err != nil {
		t.Fatalf("logs: %v", err)
	}
	if strings.Contains(logs.String(), "FORGED-OUTPUT") {
		t.Errorf("the agent's forged line reached the instance's output:\n%s", logs.String())
	}
}
