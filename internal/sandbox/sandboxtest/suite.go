// Package sandboxtest is the conformance suite every sandbox.Engine backend
// runs against its real engine, so Docker, Podman and Incus give the same
// guarantees.
package sandboxtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// The unprivileged user the suite's containers run as when the tests run as
// root; deliberately not the test process's own uid. Run as another user
// (for a rootless engine), the suite's containers run as that user, as
// airlock's agents do: only the user's own ids map onto themselves there.
const (
	rootTestUID = 4242
	rootTestGID = 4343
)

// suiteUser is the uid and gid the suite's containers run as.
func suiteUser() (uid, gid int) {
	if os.Getuid() == 0 {
		return rootTestUID, rootTestGID
	}
	return os.Getuid(), os.Getgid()
}

// limitsIgnorer is an engine that may drop resource limits (rootless
// Podman on cgroup v1); it says why.
type limitsIgnorer interface {
	LimitsIgnored(ctx context.Context) (string, error)
}

// policyNetwork is an engine whose containers always have a network
// interface, cut off by policy rather than by having none (on Kubernetes a
// pod always has one; a NetworkPolicy denies all its traffic). It names an
// address outside the container that answers TCP, which the container must
// then fail to reach.
type policyNetwork interface {
	NetworkProbe(ctx context.Context) (hostPort string, err error)
}

// pidsIgnorer is an engine that cannot limit a container's processes (on
// Kubernetes only the kubelet's node-wide podPidsLimit exists); it says why.
type pidsIgnorer interface {
	PidsLimitIgnored() string
}

type suiteTest struct {
	name string
	fn   func(*testing.T, *suite)
}

// RunEngineSuite checks that the engine returned by newEngine runs hardened
// containers and reports on them as the sandbox.Engine contract says: the
// contract (RunContractSuite) plus what the kernel shows inside its
// containers. The engine must already hold Image (see BusyboxRootfs).
// Subtests run in parallel and remove every container they create.
func RunEngineSuite(t *testing.T, newEngine func() sandbox.Engine) {
	runSuite(t, newEngine, append(isolationTests(), contractTests()...))
}

// RunContractSuite is the part of the engine suite that does not look at
// the kernel from inside a container (capabilities, cgroups, interfaces):
// the lifecycle, states, exit codes, logs, labels and refusals every
// engine shares, the in-memory one included. Its containers run the
// suite's few shell scripts (exit, sleep, echo, trap).
func RunContractSuite(t *testing.T, newEngine func() sandbox.Engine) {
	runSuite(t, newEngine, contractTests())
}

// isolationTests read the kernel's view from inside a container.
func isolationTests() []suiteTest {
	return []suiteTest{
		{"Hardening", testHardening},
		{"NetworkNone", testNetworkNone},
		{"PidsLimit", testPidsLimit},
		{"MemoryLimit", testMemoryLimit},
		{"SpecHonoured", testSpecHonoured},
	}
}

func contractTests() []suiteTest {
	return []suiteTest{
		{"Ping", testPing},
		{"ImageExists", testImageExists},
		{"ExitCodes", testExitCodes},
		{"WaitBeforeStart", testWaitBeforeStart},
		{"LogsSeparateStreams", testLogs},
		{"InspectState", testInspectState},
		{"LabelsAndList", testLabelsAndList},
		{"ListWhileRemoving", testListWhileRemoving},
		{"StopGraceful", testStopGraceful},
		{"StopKillsAfterTimeout", testStopKills},
		{"Remove", testRemove},
		{"MissingContainer", testMissing},
		{"DuplicateName", testDuplicateName},
		{"RefusesEngineSocket", testRefusesEngineSocket},
		{"RefusesRoot", testRefusesRoot},
		{"BindMountOwnership", testBindMountOwnership},
	}
}

func runSuite(t *testing.T, newEngine func() sandbox.Engine, tests []suiteTest) {
	s := &suite{e: newEngine(), runLabel: randomHex(t)}
	s.uid, s.gid = suiteUser()
	s.user = fmt.Sprintf("%d:%d", s.uid, s.gid)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, s)
		})
	}
}

type suite struct {
	e        sandbox.Engine
	runLabel string // labels this run's containers, so List tests see only theirs
	uid, gid int    // the containers' user
	user     string // "uid:gid"
}

// skipIfLimitsIgnored skips a limit test on an engine that says it cannot
// enforce limits (the backend's documentation says so too).
func (s *suite) skipIfLimitsIgnored(t *testing.T) {
	li, ok := s.e.(limitsIgnorer)
	if !ok {
		return
	}
	why, err := li.LimitsIgnored(ctx(t))
	if err != nil {
		t.Fatalf("LimitsIgnored: %v", err)
	}
	if why != "" {
		t.Skip(why)
	}
}

// spec returns a spec with a unique name running script under sh.
func (s *suite) spec(t *testing.T, script string) sandbox.Spec {
	return sandbox.Spec{
		Name:   "airlock-suite-" + randomHex(t),
		Image:  Image,
		Cmd:    []string{"sh", "-c", script},
		User:   s.user,
		Labels: map[string]string{"airlock.suite": s.runLabel},
	}
}

func (s *suite) create(t *testing.T, spec sandbox.Spec) string {
	t.Helper()
	id, err := s.e.Create(ctx(t), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		// Generous: Incus on a loaded machine took over 30 s.
		c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.e.Remove(c, id); err != nil {
			t.Errorf("cleanup: Remove %s: %v", spec.Name, err)
		}
	})
	return id
}

// run creates and starts spec, waits for the exit and returns the exit code
// and the logs.
func (s *suite) run(t *testing.T, spec sandbox.Spec) (int, string) {
	t.Helper()
	id := s.create(t, spec)
	if err := s.e.Start(ctx(t), id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	code, err := s.e.Wait(ctx(t), id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return code, s.logs(t, id)
}

func (s *suite) logs(t *testing.T, id string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := s.e.Logs(ctx(t), id, &buf); err != nil {
		t.Fatalf("Logs: %v", err)
	}
	return buf.String()
}

// runOK is run for scripts that must succeed.
func (s *suite) runOK(t *testing.T, spec sandbox.Spec) string {
	t.Helper()
	code, out := s.run(t, spec)
	if code != 0 {
		t.Fatalf("script exited %d, want 0; output:\n%s", code, out)
	}
	return out
}

func testPing(t *testing.T, s *suite) {
	if err := s.e.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testImageExists(t *testing.T, s *suite) {
	for ref, want := range map[string]bool{Image: true, "airlock-test-absent:0": false} {
		got, err := s.e.ImageExists(ctx(t), ref)
		if err != nil || got != want {
			t.Errorf("ImageExists(%s) = %v, %v; want %v, nil", ref, got, err, want)
		}
	}
}

func testExitCodes(t *testing.T, s *suite) {
	for _, tc := range []struct {
		script string
		want   int
	}{{"true", 0}, {"exit 3", 3}} {
		spec := s.spec(t, tc.script)
		code, out := s.run(t, spec)
		if code != tc.want {
			t.Errorf("%q exited %d, want %d; output:\n%s", tc.script, code, tc.want, out)
		}
		// Waiting again after the exit reports the same code at once.
		again, err := s.e.Wait(ctx(t), spec.Name)
		if err != nil || again != tc.want {
			t.Errorf("second Wait for %q = %d, %v; want %d, nil", tc.script, again, err, tc.want)
		}
	}
}

func testWaitBeforeStart(t *testing.T, s *suite) {
	id := s.create(t, s.spec(t, "sleep 1; exit 3"))
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := s.e.Wait(ctx(t), id)
		done <- result{code, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Wait returned %d, %v before the container was started", r.code, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := s.e.Start(ctx(t), id); err != nil {
		t.Fatalf("Start: %v", err)
	}
	r := <-done
	if r.err != nil || r.code != 3 {
		t.Fatalf("Wait = %d, %v; want 3, nil", r.code, r.err)
	}
}

func testHardening(t *testing.T, s *suite) {
	out := s.runOK(t, s.spec(t, `cat /proc/self/status; echo "pid=$$"; echo "init=$(cat /proc/1/comm)"`))
	want := map[string]string{
		"CapEff":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"CapAmb":     "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2",
		"Uid":        strings.Repeat(strconv.Itoa(s.uid)+" ", 4),
		"Gid":        strings.Repeat(strconv.Itoa(s.gid)+" ", 4),
	}
	fields := statusFields(out)
	for k, v := range want {
		if got := fields[k]; got != strings.TrimSpace(v) {
			t.Errorf("/proc/self/status %s = %q, want %q", k, got, strings.TrimSpace(v))
		}
	}
	// Our command must not be PID 1: an init reaps zombies and forwards
	// signals, which a shell or an agent does not.
	if strings.Contains(out, "pid=1\n") {
		t.Errorf("the command runs as PID 1 (no init); output:\n%s", out)
	}
	if m := regexp.MustCompile(`init=(\S+)`).FindStringSubmatch(out); m == nil || m[1] == "sh" || m[1] == "busybox" {
		t.Errorf("PID 1 is not an init; output:\n%s", out)
	}
}

func testNetworkNone(t *testing.T, s *suite) {
	if pn, ok := s.e.(policyNetwork); ok {
		probe, err := pn.NetworkProbe(ctx(t))
		if err != nil {
			t.Fatalf("NetworkProbe: %v", err)
		}
		host, port, _ := strings.Cut(probe, ":")
		out := s.runOK(t, s.spec(t, "nc -w 3 "+host+" "+port+" </dev/null && echo connected; true"))
		if strings.Contains(out, "connected") {
			t.Fatalf("a container reached %s; its network must be cut off (output:\n%s)", probe, out)
		}
		return
	}
	out := s.runOK(t, s.spec(t, "cat /proc/net/dev"))
	var ifaces []string
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			ifaces = append(ifaces, strings.TrimSpace(name))
		}
	}
	if len(ifaces) != 1 || ifaces[0] != "lo" {
		t.Fatalf("interfaces with network none = %v, want only lo; /proc/net/dev:\n%s", ifaces, out)
	}
}

func testPidsLimit(t *testing.T, s *suite) {
	s.skipIfLimitsIgnored(t)
	if pi, ok := s.e.(pidsIgnorer); ok {
		t.Skip(pi.PidsLimitIgnored())
	}
	spec := s.spec(t, "for i in $(seq 1 200); do sleep 60 & echo started; done")
	spec.Limits.Pids = 32
	code, out := s.run(t, spec)
	started := strings.Count(out, "started")
	if started >= 200 || code == 0 {
		t.Fatalf("with a pids limit of 32, %d of 200 processes started (exit %d)", started, code)
	}
	if started < 10 {
		t.Errorf("only %d processes started under a limit of 32; output:\n%s", started, out)
	}
}

func testMemoryLimit(t *testing.T, s *suite) {
	s.skipIfLimitsIgnored(t)
	const limit = 64 << 20
	spec := s.spec(t, `
if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
	echo "mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
	[ -f /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes ] && echo "memsw=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes)"
else
	echo "mem=$(cat /sys/fs/cgroup/memory.max)"
	echo "swap=$(cat /sys/fs/cgroup/memory.swap.max)"
fi
true`)
	spec.Limits.MemoryBytes = limit
	out := s.runOK(t, spec)
	if !strings.Contains(out, "mem="+strconv.Itoa(limit)+"\n") {
		t.Errorf("memory limit not in effect; want %d, cgroup says:\n%s", limit, out)
	}
	// Swap equal to the limit means none on top of it.
	if strings.Contains(out, "memsw=") && !strings.Contains(out, "memsw="+strconv.Itoa(limit)+"\n") ||
		strings.Contains(out, "swap=") && !strings.Contains(out, "swap=0\n") {
		t.Errorf("swap allowed beyond the memory limit; cgroup says:\n%s", out)
	}
}

func testSpecHonoured(t *testing.T, s *suite) {
	spec := s.spec(t, `echo "pwd=$(pwd)"; echo "greeting=$GREETING"; grep ' /scratch ' /proc/mounts; grep sandbox-host /etc/hosts; ulimit -n`)
	spec.Env = []string{"GREETING=hello there"}
	spec.WorkDir = "/tmp"
	spec.Tmpfs = []sandbox.Tmpfs{{Target: "/scratch", SizeBytes: 1 << 20}}
	spec.ExtraHosts = []sandbox.HostAddr{{Name: "sandbox-host.test", Addr: netip.MustParseAddr("127.0.0.2")}}
	out := s.runOK(t, spec)
	for _, want := range []string{"pwd=/tmp\n", "greeting=hello there\n", "tmpfs /scratch tmpfs", "127.0.0.2", "20000\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q; output:\n%s", want, out)
		}
	}
}

func testLogs(t *testing.T, s *suite) {
	out := s.runOK(t, s.spec(t, "echo out; echo err >&2"))
	if len(out) != len("out\nerr\n") || !strings.Contains(out, "out\n") || !strings.Contains(out, "err\n") {
		t.Fatalf("Logs = %q, want the lines out and err and nothing else (no stream headers)", out)
	}
}

func testInspectState(t *testing.T, s *suite) {
	spec := s.spec(t, "exit 5")
	spec.Labels["airlock.role"] = "agent"
	id := s.create(t, spec)
	st, err := s.e.Inspect(ctx(t), spec.Name)
	if err != nil {
		t.Fatalf("Inspect by name: %v", err)
	}
	if st.ID != id || st.Name != spec.Name || st.Status != sandbox.StatusCreated || !st.StartedAt.IsZero() {
		t.Errorf("created container: State = %+v, want ID %s, name %s, status created, no start time", st, id, spec.Name)
	}
	before := time.Now().Add(-time.Second)
	if err := s.e.Start(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.e.Wait(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	st, err = s.e.Inspect(ctx(t), id)
	if err != nil {
		t.Fatalf("Inspect by ID: %v", err)
	}
	if st.Status != sandbox.StatusExited || st.ExitCode != 5 || st.OOMKilled {
		t.Errorf("State = %+v, want exited with code 5", st)
	}
	if st.Image != Image || st.Labels["airlock.role"] != "agent" || st.Labels["airlock.suite"] != s.runLabel {
		t.Errorf("State image %q labels %v, want %s and the spec's labels", st.Image, st.Labels, Image)
	}
	// The engine stamps start and finish from different components
	// (dockerd and the runtime); a command that exits at once may show a
	// finish a few milliseconds "before" its start.
	const skew = 200 * time.Millisecond
	if st.StartedAt.Before(before) || st.FinishedAt.Before(st.StartedAt.Add(-skew)) || time.Since(st.FinishedAt) > time.Minute {
		t.Errorf("times started %v finished %v, want both just now, in order", st.StartedAt, st.FinishedAt)
	}
}

func testLabelsAndList(t *testing.T, s *suite) {
	group := randomHex(t)
	var names []string
	for _, role := range []string{"agent", "harvest"} {
		spec := s.spec(t, "true")
		spec.Labels["airlock.test-group"] = group
		spec.Labels["airlock.role"] = role
		s.create(t, spec)
		names = append(names, spec.Name)
	}
	other := s.spec(t, "true") // same suite label, other group
	s.create(t, other)

	all, err := s.e.List(ctx(t), map[string]string{"airlock.test-group": group})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got := stateNames(all); len(got) != 2 || !slices.Contains(got, names[0]) || !slices.Contains(got, names[1]) {
		t.Errorf("List(group) = %v, want %v", got, names)
	}
	agents, err := s.e.List(ctx(t), map[string]string{"airlock.test-group": group, "airlock.role": "agent"})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got := stateNames(agents); len(got) != 1 || got[0] != names[0] {
		t.Errorf("List(group, role=agent) = %v, want [%s]", got, names[0])
	} else if agents[0].Labels["airlock.role"] != "agent" || agents[0].Status != sandbox.StatusCreated {
		t.Errorf("List state = %+v, want labels and status created", agents[0])
	}
	suiteWide, err := s.e.List(ctx(t), map[string]string{"airlock.suite": s.runLabel})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.Contains(stateNames(suiteWide), other.Name) {
		t.Errorf("List(suite label) = %v, lacks %s", stateNames(suiteWide), other.Name)
	}
}

// testListWhileRemoving: containers removed while List runs are left out
// of its answer, not an error (`airlock ls` and clean list while other runs
// end; Podman failed such a List under load).
func testListWhileRemoving(t *testing.T, s *suite) {
	group := randomHex(t)
	const n = 4
	ids := make([]string, n)
	for i := range ids {
		// Running: removing one then takes a while (a stop first).
		spec := s.spec(t, "sleep 600")
		spec.Labels["airlock.test-group"] = group
		ids[i] = s.create(t, spec)
		if err := s.e.Start(ctx(t), ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	// Generous: on Incus 6.0.4 a file read that meets the start of a
	// deletion (List reads each instance's exit record) starts a file
	// server the deletion waits for until it idles out (see
	// Incus.deleting): up to a minute here, under load.
	rmCtx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if err := s.e.Remove(rmCtx, id); err != nil {
				t.Errorf("Remove: %v", err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	lists := 0
	for {
		select {
		case <-done:
			all, err := s.e.List(ctx(t), map[string]string{"airlock.test-group": group})
			if err != nil || len(all) != 0 {
				t.Errorf("List after every Remove = %v, %v; want none", stateNames(all), err)
			}
			t.Logf("%d lists while removing", lists)
			return
		default:
		}
		if _, err := s.e.List(ctx(t), map[string]string{"airlock.test-group": group}); err != nil {
			t.Fatalf("List while containers are removed: %v", err)
		}
		lists++
		time.Sleep(20 * time.Millisecond)
	}
}

// startReady starts spec and waits until its script printed "ready".
func (s *suite) startReady(t *testing.T, spec sandbox.Spec) string {
	t.Helper()
	id := s.create(t, spec)
	if err := s.e.Start(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.logs(t, id), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("container never became ready; logs:\n%s", s.logs(t, id))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return id
}

func testStopGraceful(t *testing.T, s *suite) {
	id := s.startReady(t, s.spec(t, "echo ready; sleep 600"))
	start := time.Now()
	if err := s.e.Stop(ctx(t), id, 30*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Stop of a container that obeys SIGTERM took %v", d)
	}
	st, err := s.e.Inspect(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != sandbox.StatusExited || st.ExitCode != 128+int(syscall.SIGTERM) {
		t.Errorf("after Stop: status %s exit %d, want exited %d (SIGTERM)", st.Status, st.ExitCode, 128+int(syscall.SIGTERM))
	}
}

func testStopKills(t *testing.T, s *suite) {
	id := s.startReady(t, s.spec(t, "trap '' TERM; echo ready; while true; do sleep 1; done"))
	start := time.Now()
	if err := s.e.Stop(ctx(t), id, time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 15*time.Second {
		t.Errorf("Stop with a 1s timeout of a container ignoring SIGTERM took %v", d)
	}
	st, err := s.e.Inspect(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != sandbox.StatusExited || st.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("after Stop: status %s exit %d, want exited %d (SIGKILL)", st.Status, st.ExitCode, 128+int(syscall.SIGKILL))
	}
}

func testRemove(t *testing.T, s *suite) {
	spec := s.spec(t, "sleep 600")
	id := s.create(t, spec)
	if err := s.e.Start(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	if err := s.e.Remove(ctx(t), id); err != nil {
		t.Fatalf("Remove of a running container: %v", err)
	}
	if _, err := s.e.Inspect(ctx(t), spec.Name); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect after Remove: err = %v, want ErrNotFound", err)
	}
	if err := s.e.Remove(ctx(t), id); err != nil {
		t.Errorf("Remove of a removed container: %v, want nil", err)
	}
}

func testMissing(t *testing.T, s *suite) {
	name := "airlock-suite-missing-" + randomHex(t)
	calls := map[string]func() error{
		"Inspect": func() error { _, err := s.e.Inspect(ctx(t), name); return err },
		"Start":   func() error { return s.e.Start(ctx(t), name) },
		"Wait":    func() error { _, err := s.e.Wait(ctx(t), name); return err },
		"Stop":    func() error { return s.e.Stop(ctx(t), name, time.Second) },
		"Logs":    func() error { return s.e.Logs(ctx(t), name, &bytes.Buffer{}) },
	}
	for op, call := range calls {
		if err := call(); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("%s of a missing container: err = %v, want ErrNotFound", op, err)
		}
	}
	if err := s.e.Remove(ctx(t), name); err != nil {
		t.Errorf("Remove of a missing container: %v, want nil", err)
	}
}

func testDuplicateName(t *testing.T, s *suite) {
	spec := s.spec(t, "true")
	s.create(t, spec)
	_, err := s.e.Create(ctx(t), spec)
	if err == nil || !strings.Contains(err.Error(), spec.Name) || !strings.Contains(err.Error(), "already in use") {
		t.Fatalf("second Create with name %s: err = %v, want one saying the name is already in use", spec.Name, err)
	}
}

func testRefusesEngineSocket(t *testing.T, s *suite) {
	sources := []string{"/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock"}
	// The socket's directory and anything above it hold the socket too.
	if _, err := os.Stat("/var/run/docker.sock"); err == nil {
		sources = append(sources, "/var/run", "/run", "/")
	}
	for _, src := range sources {
		spec := s.spec(t, "true")
		spec.Mounts = []sandbox.Mount{{Source: src, Target: "/engine"}}
		id, err := s.e.Create(ctx(t), spec)
		if err == nil {
			_ = s.e.Remove(ctx(t), id)
			t.Errorf("Create with a mount of %s succeeded; the engine socket must never reach a sandbox", src)
			continue
		}
		if !strings.Contains(err.Error(), "engine") {
			t.Errorf("mount of %s refused with %q; want a message naming the container engine", src, err)
		}
		if _, err := s.e.Inspect(ctx(t), spec.Name); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("refused Create left a container behind: %v", err)
		}
	}
}

func testRefusesRoot(t *testing.T, s *suite) {
	for _, u := range []string{"", "0", "0:0", "root", "root:root", "0:1000"} {
		spec := s.spec(t, "true")
		spec.User = u
		id, err := s.e.Create(ctx(t), spec)
		if err == nil {
			_ = s.e.Remove(ctx(t), id)
			t.Errorf("Create with user %q succeeded; containers never run as root", u)
			continue
		}
		if !strings.Contains(err.Error(), "root") {
			t.Errorf("user %q refused with %q; want a message saying why (root)", u, err)
		}
	}
}

func testBindMountOwnership(t *testing.T, s *suite) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	spec := s.spec(t, "echo hi > /data/written")
	spec.Mounts = []sandbox.Mount{{Source: dir, Target: "/data"}}
	s.runOK(t, spec)
	fi, err := os.Stat(filepath.Join(dir, "written"))
	if err != nil {
		t.Fatalf("file written by the container is not on the host: %v", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skip("no uid/gid on this platform")
	}
	if int(st.Uid) != s.uid || int(st.Gid) != s.gid {
		t.Errorf("file written by the container is owned by %d:%d on the host, want %s", st.Uid, st.Gid, s.user)
	}

	ro := s.spec(t, "echo hi > /data/again")
	ro.Mounts = []sandbox.Mount{{Source: dir, Target: "/data", ReadOnly: true}}
	if code, out := s.run(t, ro); code == 0 {
		t.Errorf("write to a read-only mount succeeded; output:\n%s", out)
	}
}

func statusFields(status string) map[string]string {
	fields := map[string]string{}
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return fields
}

func stateNames(states []sandbox.State) []string {
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = st.Name
	}
	return names
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func randomHex(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
