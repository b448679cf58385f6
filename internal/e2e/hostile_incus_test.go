package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// With Docker in the sandbox the agent is root in its instance. Through a
// privileged nested container it tries to reach the host's Incus socket, a
// network, a host disk, and to plant a set-uid root file in a host
// directory; it forges the init's exit record (which it can: documented)
// and breaks the init's own write of it; then it outlives the deadline.
// The host must still stop it at the deadline and record that, and the
// planted file must not be the host's root's.
const incusNestingAttack = `
try() { name=$1; shift; if "$@" >/tmp/o 2>&1; then echo "$name: OPEN $(head -c 300 /tmp/o | tr '\n' ' ')"; else echo "$name: blocked $(head -c 300 /tmp/o | tr '\n' ' ')"; fi; }
docker import nested.tar nested:1 >/dev/null || echo "import: FAILED"
N="docker run --rm --privileged --network host --pid host -v /:/host -v $PWD:/w nested:1"
try "the host's Incus socket" $N sh -c 'test -e /host/var/lib/incus/unix.socket || test -e /host/run/incus/unix.socket || test -e /host/dev/incus/sock'
try "a network interface" $N sh -c 'grep : /proc/net/dev | grep -v -E "^ *(lo|docker0|veth[0-9a-f]*):"'
try "a route" $N sh -c 'grep -v -E "^(Iface|docker0)" /proc/net/route | grep .'
try "a block device to mount" $N sh -c 'for d in /dev/*; do test -b "$d" && echo "$d" && busybox mount "$d" /mnt && exit 0; done; exit 1'
try "the host's processes" $N sh -c 'for p in /proc/[0-9]*; do grep -q "incus[d]" "$p/cmdline" 2>/dev/null && exit 0; done; exit 1'
$N sh -c 'cp /bin/busybox /w/planted && chown 0:0 /w/planted && chmod 4755 /w/planted' && echo "plant: done"
$N sh -c 'echo "{\"code\":0,\"finished\":\"2026-01-01T00:00:00Z\"}" > /host/.airlock-incus/exit && mkdir /host/.airlock-incus/exit.new' && echo "forge: done"
`

func TestHostileIncusNesting(t *testing.T) {
	e := newEnvOn(t, onIncus)
	nestingProject(t, e)
	e.write(".airlock/config.toml", "[engine.incus]\nnesting = true\n")
	e.write("nesting-attack.sh", incusNestingAttack)
	e.git("add", ".")
	e.git("commit", "-qm", "attack")
	e.server(runScript("incus-nesting", "sh nesting-attack.sh > results.txt 2>&1; sleep 600"))

	start := time.Now()
	res := e.airlock("run", "-y", "-m", "Get out through Docker.", "--name", "nested-escape", "--timeout", "90s")
	if res.code != 3 {
		t.Fatalf("run exit %d, want 3 (stopped by the deadline)\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	t.Logf("stopped after %s", time.Since(start).Round(time.Second))
	r := e.runs()[0]
	if r.Status != store.StatusStopped || r.StopReason != "budget" || !strings.Contains(r.Error, "timeout") {
		t.Errorf("run = %s, %q, %q; want stopped by the budget's timeout, whatever the forged record says", r.Status, r.StopReason, r.Error)
	}
	ws := filepath.Join(e.state, "airlock", "runs", r.ID, "workspace")
	data, err := os.ReadFile(filepath.Join(ws, "results.txt"))
	if err != nil {
		t.Fatalf("no results from the sandbox: %v", err)
	}
	results := string(data)
	for _, want := range []string{"plant: done", "forge: done"} {
		if !strings.Contains(results, want) {
			t.Errorf("the agent could not %s as root in its instance (is Docker running?):\n%s", strings.TrimSuffix(want, ": done"), results)
		}
	}
	n := 0
	for _, line := range strings.Split(results, "\n") {
		name, verdict, ok := strings.Cut(line, ": ")
		if !ok || (!strings.HasPrefix(verdict, "blocked") && !strings.HasPrefix(verdict, "OPEN")) {
			continue
		}
		n++
		if !strings.HasPrefix(verdict, "blocked") {
			t.Errorf("%s: the agent succeeded: %s", name, verdict)
		} else {
			t.Logf("%s: %s", name, verdict)
		}
	}
	if want := strings.Count(incusNestingAttack, "\ntry "); n != want {
		t.Errorf("%d verdicts for %d attempts:\n%s", n, want, results)
	}
	// The set-uid file is on the host, but not the host's root's.
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(ws, "planted"), &st); err != nil {
		t.Fatalf("the planted file: %v", err)
	}
	if st.Uid == 0 || st.Gid == 0 {
		t.Errorf("the instance's root planted a file owned by the host's %d:%d (mode %o)", st.Uid, st.Gid, st.Mode)
	} else {
		t.Logf("the planted set-uid file belongs to %d:%d on the host", st.Uid, st.Gid)
	}
}
