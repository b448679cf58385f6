package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// needRunsc skips a test when Docker has no runsc runtime, except on CI,
// where scripts/setup.sh registers it and its absence is a failure.
func needRunsc(t testing.TB) {
	t.Helper()
	out, err := exec.Command("docker", "info", "--format", "{{range $name, $_ := .Runtimes}}{{$name}} {{end}}").Output()
	if err == nil && strings.Contains(" "+string(out), " runsc ") {
		return
	}
	msg := fmt.Sprintf("Docker has no runsc runtime (runtimes: %s; err %v): run scripts/setup.sh", strings.TrimSpace(string(out)), err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// needRunscOn is needRunsc for the env's engine: on Podman, the service
// that creates gVisor containers must answer (scripts/setup.sh starts it).
func needRunscOn(t testing.TB, e *env) {
	t.Helper()
	if e.engine == onDocker {
		needRunsc(t)
		return
	}
	eng, err := e.sandboxEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if err := sandbox.CheckRuntime(context.Background(), eng, "runsc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs gVisor on %s (scripts/setup.sh): %v", e.engine, err)
		}
		t.Skipf("no gVisor on %s (run scripts/setup.sh): %v", e.engine, err)
	}
}

// hostKernel is the host's kernel release; gVisor reports its own.
func hostKernel(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("uname", "-r").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// runtimeOf is the OCI runtime the env's engine runs a container under,
// as the engine itself reports it.
func (e *env) runtimeOf(container string) string {
	e.t.Helper()
	var out []byte
	var err error
	switch e.engine {
	case onDocker:
		out, err = exec.Command("docker", "inspect", "--format", "{{.HostConfig.Runtime}}", container).CombinedOutput()
	case onPodman:
		out, err = exec.Command("podman", "inspect", "--format", "{{.OCIRuntime}}", container).CombinedOutput()
	case onRootlessPodman:
		var s string
		s, err = asUser(e.user, "", nil, "podman", "inspect", "--format", "{{.OCIRuntime}}", container)
		out = []byte(s)
	}
	if err != nil {
		e.t.Fatalf("inspect %s on %s: %v\n%s", container, e.engine, err, out)
	}
	return strings.TrimSpace(string(out))
}

// A run under gVisor does what a run under runc does: the real Claude Code,
// its model traffic through the proxy over the Unix socket shared with the
// proxy's (runc) container, the harvest, diff and merge. The kernel the
// agent saw is gVisor's, not the host's.
func TestGVisorWriteCommitMerge(t *testing.T) { onEngines(t, gvisorEngines, gvisorWriteCommitMerge) }

func gvisorWriteCommitMerge(t *testing.T, e *env) {
	needRunscOn(t, e)
	srv, _ := e.server(testkit.BashScript("gvisor",
		`printf 'print("Hello from gVisor")\n' > hello.py && python3 hello.py`,
		`uname -r > kernel.txt && git add hello.py kernel.txt && git commit -qm "Add hello.py"`,
		`echo left over > notes.txt`))

	res := e.ok("run", "--runtime", "runsc", "-m", "Write hello.py, run it, commit it.", "--name", "hello")
	if out := res.stdout + res.stderr; !strings.Contains(out, "runtime runsc") || !strings.Contains(out, "succeeded") {
		t.Errorf("run output does not say it ran under runsc and succeeded:\n%s", out)
	}
	if len(srv.Requests()) < 3 {
		t.Errorf("the model server got %d requests, want one per step and a last one", len(srv.Requests()))
	}
	runs := e.runs()
	if len(runs) != 1 || runs[0].Status != store.StatusSucceeded || runs[0].Runtime != "runsc" {
		t.Fatalf("runs = %+v, want one succeeded run with runtime runsc", runs)
	}
	r := runs[0]
	if got := e.runtimeOf(r.Container); got != "runsc" {
		t.Errorf("the agent's container ran under %q, want runsc", got)
	}
	if r.Turns == 0 {
		t.Errorf("the proxy metered no turns: %+v", r)
	}

	diff := e.ok("diff").stdout
	if !strings.Contains(diff, "Hello from gVisor") || !strings.Contains(diff, "left over") {
		t.Errorf("diff lacks the commit or the uncommitted file:\n%s", diff)
	}
	e.ok("merge")
	if got := e.git("log", "-1", "--format=%s"); got != "Add hello.py" {
		t.Fatalf("after merge HEAD is %q", got)
	}
	kernel, err := os.ReadFile(filepath.Join(e.repo, "kernel.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if k, host := strings.TrimSpace(string(kernel)), hostKernel(t); k == "" || k == host {
		t.Errorf("the agent saw kernel %q, the host's own (%s): not gVisor", k, host)
	}
	t.Logf("the agent's kernel: %s", kernel)
	e.ok("rm", "-y", "--force") // notes.txt was left uncommitted
}

// A runtime the engine does not have is refused before anything is made,
// with the runtimes it does have.
func TestGVisorUnknownRuntime(t *testing.T) {
	e := newEnv(t)
	srv, _ := e.server(testkit.DemoScript())
	for _, args := range [][]string{
		{"run", "-y", "--runtime", "nosuch", "-m", "x"},
		{"shell", "-y", "-d", "--runtime", "nosuch"},
	} {
		e.write(".airlock/config.toml", "")
		res := e.airlock(args...)
		if res.code == 0 || !strings.Contains(res.stderr, `runtime "nosuch" is not one the container engine has`) ||
			!strings.Contains(res.stderr, "runc") {
			t.Errorf("airlock %s: exit %d, stderr:\n%s\nwant a refusal naming the runtimes there are", strings.Join(args, " "), res.code, res.stderr)
		}
	}
	e.write(".airlock/config.toml", "[sandbox]\nruntime = \"nosuch\"\n")
	res := e.airlock("run", "-y", "-m", "x")
	if res.code == 0 || !strings.Contains(res.stderr, `runtime "nosuch"`) {
		t.Errorf("[sandbox] runtime = \"nosuch\": exit %d, stderr:\n%s", res.code, res.stderr)
	}
	if res := e.airlock("doctor"); res.code == 0 || !strings.Contains(res.stdout, "FAIL  runtime") || !strings.Contains(res.stdout, "it has: ") {
		t.Errorf("doctor with [sandbox] runtime = \"nosuch\": exit %d, stdout:\n%s", res.code, res.stdout)
	}
	if runs := e.runs(); len(runs) != 0 {
		t.Errorf("a refused run left records: %+v", runs)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("the model server got %d requests", n)
	}
	out, err := exec.Command("docker", "ps", "-a", "--format", `{{.Names}} {{.Label "airlock.store"}}`).CombinedOutput()
	if err != nil {
		t.Fatalf("docker ps: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if _, store, _ := strings.Cut(line, " "); strings.HasPrefix(store, e.state) {
			t.Errorf("a refused run left a container: %s", line)
		}
	}
}

// The isolation attempts of TestIsolation's allowlist run, from an agent
// under gVisor: its netstack has nothing but loopback, and its one way out
// is the proxy's socket.
func TestHostileGVisorIsolation(t *testing.T) {
	onEngines(t, gvisorHeavyEngines, hostileGVisorIsolation)
}

func hostileGVisorIsolation(t *testing.T, e *env) {
	needRunscOn(t, e)
	w := newWorldOn(t, e.engine, e.user)
	up := w.start("up", "allowed.test", "wild.test", "sub.wild.test", "bad.wild.test")
	stray := w.start("stray", "other.test", "stray.test")
	hs := startHostServer(t)

	realKey := "sk-ant-api03-" + base64.RawURLEncoding.EncodeToString(randBytes(60))
	fake := "sk-ant-api03-" + randHex(80)
	vars := strings.NewReplacer(
		"{UP}", up.ip, "{STRAY}", stray.ip, "{GW}", w.gateway, "{D0}", shared.gateway,
		"{HP}", fmt.Sprint(hs.port), "{FAKE}", fake, "{FAKEHOST}", fake[:53]+"."+fake[53:]+".wild.test",
		"{GHP}", "ghp_"+randHex(36), "{PLACEHOLDER}", agent.PlaceholderAPIKey, "{HOSTKERNEL}", hostKernel(t),
		"{UID}", fmt.Sprint(e.uid()),
	)
	e.write(".airlock/config.toml", vars.Replace("[sandbox]\nruntime = \"runsc\"\n"+isolationEgress(w.network)))
	e.write("iso.py", isoPy)
	e.write("ca.pem", string(w.caPEM))
	attempts := gvisorAttempts(t)
	e.write("attempts.sh", attemptsScript(attempts, vars)+keyHunt)
	e.git("add", ".")
	e.git("commit", "-qm", "isolation attempts")

	srv, _ := e.server(runScript("isolation", "sh attempts.sh > results.txt 2>&1; echo finished"))
	setAPIKey(e, realKey)
	e.ok("run", "-y", "-m", "Try to get out.", "--name", "escape")
	r := e.runs()[0]
	if got := e.runtimeOf(r.Container); got != "runsc" {
		t.Fatalf("the agent's container ran under %q, want runsc", got)
	}
	ws := filepath.Join(e.state, "airlock", "runs", r.ID, "workspace")
	recs := auditRecords(t, e.state, r.ID)
	checkAttempts(t, attempts, vars, filepath.Join(ws, "results.txt"), recs)

	for _, q := range srv.Requests() {
		if q.APIKey() != realKey {
			t.Errorf("%s %s carried %q, want the real key", q.Method, q.Path, q.APIKey())
		}
	}
	hunt, err := os.ReadFile(filepath.Join(ws, "keyhunt.txt"))
	if err != nil {
		t.Fatalf("the key hunt did not run: %v", err)
	}
	if strings.Contains(string(hunt), realKey) || !strings.Contains(string(hunt), agent.PlaceholderAPIKey) {
		t.Errorf("key hunt: real key seen %v, placeholder seen %v (the hunt must find the placeholder to prove anything)",
			strings.Contains(string(hunt), realKey), strings.Contains(string(hunt), agent.PlaceholderAPIKey))
	}
	for _, u := range []upstream{up, stray} {
		if logs := w.logs(u.name); strings.Contains(logs, fake[:53]) || (u.name == stray.name && strings.Contains(logs, "http ")) {
			t.Errorf("upstream %s saw what it must not:\n%s", u.name, tail(logs, 30))
		}
	}
	if n := hs.conns.Load(); n != 0 {
		t.Errorf("the host server accepted %d connections", n)
	}
}

// gvisorAttempts are TestIsolation's allowlist attempts, read the way gVisor
// lets them be read, plus a control that the agent is under gVisor at all.
func gvisorAttempts(t *testing.T) []attempt {
	t.Helper()
	const privs = "capabilities or new privileges"
	out := []attempt{
		{name: "control: the kernel is gVisor's", script: `k=$(uname -r); if [ "$k" = "{HOSTKERNEL}" ]; then verdict failed "host kernel $k"; else verdict ok "kernel $k"; fi`, want: "ok"},
		// --host-uds=open lets the sandbox connect to host sockets in its
		// mounts: through a link in the workspace, the proxy's is reached
		// (so links work), and an engine's socket, by its host path, is not.
		{name: "control: a link to the proxy's socket connects", script: `ln -sf /airlock/sock/proxy.sock .lproxy; direct curl -sS -m 5 -o /dev/null -w '%{http_code}' --unix-socket .lproxy http://allowed.test/; rm -f .lproxy`, want: "ok"},
		{name: "a link in the workspace to an engine socket's host path", script: `for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock /run/podman/podman.sock /run/podman/podman-runsc.sock /run/user/{UID}/podman/podman.sock /run/user/{UID}/podman/podman-runsc.sock; do ln -sf "$s" ".l$(printf %s "$s" | tr / _)"; done; out=; for l in .l_*; do r=$(curl -sS -m 5 --unix-socket "$l" http://engine/version 2>&1) && out="$out $l: $r"; done; rm -f .l_*; if [ -n "$out" ]; then verdict ok "$out"; else verdict failed "no engine answered through a link"; fi`, want: "failed"},
	}
	found := false
	for _, a := range allowlistAttempts {
		if a.name == privs {
			// gVisor's /proc/self/status has no NoNewPrivs line: ask prctl.
			a.script = `st="$(grep '^CapEff' /proc/self/status | tr -s '\t' ' ') nnp=$(python3 -c 'import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))')"; case "$st" in "CapEff: 0000000000000000 nnp=1") verdict failed "$st";; *) verdict ok "$st";; esac`
			found = true
		}
		out = append(out, a)
	}
	if !found {
		t.Fatalf("no attempt %q in allowlistAttempts to adapt", privs)
	}
	return out
}

// An interactive session under gVisor: Claude Code's terminal UI in tmux,
// driven with tmux send/capture, and exec into the sandbox.
func TestGVisorShellExec(t *testing.T) { onEngines(t, gvisorHeavyEngines, gvisorShellExec) }

func gvisorShellExec(t *testing.T, e *env) {
	needRunscOn(t, e)
	e.server(testkit.ChatScript())
	id := e.startShell("--runtime", "runsc")
	if got := e.runtimeOf("airlock-" + id); got != "runsc" {
		t.Fatalf("the session's container ran under %q, want runsc", got)
	}
	e.ok("tmux", "send", id, "What is the answer?", "--enter")
	e.waitScreen(id, testkit.ChatAnswer, time.Minute)
	if k := strings.TrimSpace(e.ok("exec", id, "--", "uname", "-r").stdout); k == "" || k == hostKernel(t) {
		t.Errorf("exec saw kernel %q, the host's: not in gVisor", k)
	}
	// cp in and out of the running gVisor sandbox (on Podman through tar
	// in the sandbox: Podman's own copy cannot see a gVisor container's
	// files), and a missing path is an error, not an empty copy.
	dir := e.tempDir()
	in := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(in, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.chown(in)
	e.ok("cp", in, id+":/workspace/in.txt")
	if got := e.ok("exec", id, "--", "cat", "/workspace/in.txt").stdout; got != "from the host\n" {
		t.Errorf("in the sandbox, in.txt = %q", got)
	}
	e.ok("exec", id, "--", "sh", "-c", "mkdir -p /workspace/out/sub && echo from the sandbox > /workspace/out/sub/f.txt")
	e.ok("cp", id+":/workspace/out", filepath.Join(dir, "out"))
	if got, err := os.ReadFile(filepath.Join(dir, "out", "sub", "f.txt")); err != nil || string(got) != "from the sandbox\n" {
		t.Errorf("copied out: %q, %v", got, err)
	}
	if res := e.airlock("cp", id+":/workspace/missing", filepath.Join(dir, "missing")); res.code == 0 {
		t.Errorf("cp of a missing path succeeded:\n%s", res.stderr)
	}
	e.ok("stop", id)
}

// On Podman a runtime without a Podman service to create its containers
// is refused before anything is made, saying what to start.
func TestGVisorPodmanUnknownRuntime(t *testing.T) {
	e := newEnvOn(t, onPodman)
	srv, _ := e.server(testkit.DemoScript())
	res := e.airlock("run", "-y", "--runtime", "nosuch", "-m", "x")
	if res.code == 0 || !strings.Contains(res.stderr, `runtime "nosuch" is not one the container engine has`) ||
		!strings.Contains(res.stderr, "podman --runtime nosuch system service") {
		t.Errorf("run --runtime nosuch on Podman: exit %d, stderr:\n%s\nwant a refusal saying which service to start", res.code, res.stderr)
	}
	if runs := e.runs(); len(runs) != 0 {
		t.Errorf("a refused run left records: %+v", runs)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("the model server got %d requests", n)
	}
}

// A persistent run under gVisor: the tool the agent installed in its
// container is still there when `start` brings the container back, under
// runsc again, continuing the conversation.
func TestGVisorPersistentStart(t *testing.T) { onEngines(t, gvisorHeavyEngines, gvisorPersistentStart) }

func gvisorPersistentStart(t *testing.T, e *env) {
	needRunscOn(t, e)
	greeting := "tool says hi " + randHex(8)
	e.write("tool/package.json", `{"name":"airlock-e2e-tool","version":"1.0.0","bin":{"airlock-e2e-tool":"cli.js"}}`+"\n")
	e.write("tool/cli.js", "#!/usr/bin/env node\nconsole.log("+`"`+greeting+`"`+")\n")
	e.git("add", ".")
	e.git("commit", "-qm", "Add a tool")

	srv, url := e.server(testkit.InstallToolScript("tool"))
	e.ok("run", "-y", "--runtime", "runsc", "--persistent", "-m", "Install the tool.", "--name", "tools")
	r := e.run("tools")
	if r.Status != store.StatusSucceeded || !r.Persistent || r.Runtime != "runsc" {
		t.Fatalf("first leg: status %s persistent %v runtime %q (%s)", r.Status, r.Persistent, r.Runtime, r.Error)
	}
	srv.Close()
	next := testkit.NewServer(testkit.Resumed(1, testkit.UseToolScript("airlock-e2e-tool")))
	if _, err := next.Start(strings.TrimPrefix(url, "http://")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })

	e.ok("start", "tools", "-m", "Run the tool and commit its output.")
	if got := e.runtimeOf(r.Container); got != "runsc" {
		t.Errorf("the restarted container runs under %q, want runsc", got)
	}
	e.ok("wait", "tools")
	r = e.run("tools")
	if r.Status != store.StatusSucceeded {
		t.Fatalf("second leg: %s (%s)\n%s", r.Status, r.Error, e.airlock("logs", "tools").stdout)
	}
	if got := e.git("show", r.Branch+":tool-output.txt"); got != greeting {
		t.Fatalf("tool-output.txt on %s = %q, want %q: the installed tool did not survive the restart", r.Branch, got, greeting)
	}
}

// The hostile copy under gVisor: hooks and config commands the agent
// plants never run on the host (the harvest, under runsc too, bundles the
// work without running them), and a destroyed copy changes nothing.
func TestHostileGVisorCopy(t *testing.T) {
	for _, k := range gvisorHeavyEngines {
		t.Run(k.String(), func(t *testing.T) {
			t.Run("planted hooks", func(t *testing.T) { hostileGVisorPlant(t, newEnvOn(t, k)) })
			t.Run("destroyed copy", func(t *testing.T) { hostileGVisorDestroy(t, newEnvOn(t, k)) })
		})
	}
}

func hostileGVisorPlant(t *testing.T, e *env) {
	needRunscOn(t, e)
	markers := e.tempDir()
	e.server(testkit.PlantScript(filepath.Join(markers, "m")))
	e.ok("run", "--runtime", "runsc", "-m", "Plant traps.", "--name", "plant")
	if got := e.runtimeOf(e.runs()[0].Container); got != "runsc" {
		t.Errorf("the agent's container ran under %q, want runsc", got)
	}
	e.ok("diff")
	e.ok("merge")
	if got := e.git("log", "-1", "--format=%s"); got != "Add planted.txt" {
		t.Fatalf("merge did not bring the commit: HEAD is %q", got)
	}
	e.ok("rm", "-y")
	entries, _ := os.ReadDir(markers)
	for _, m := range entries {
		t.Errorf("host ran a planted command: %s", m.Name())
	}
}

func hostileGVisorDestroy(t *testing.T, e *env) {
	needRunscOn(t, e)
	e.server(testkit.DestroyScript())
	before := treeHash(t, e.repo)
	if res := e.airlock("run", "--runtime", "runsc", "-m", "Destroy the repository.", "--name", "destroy"); res.code != 0 && res.code != 3 {
		t.Fatalf("run: exit %d\n%s", res.code, res.stderr)
	}
	if after := treeHash(t, e.repo); after != before {
		t.Fatal("the user's repository changed")
	}
	if r := e.runs()[0]; r.Runtime != "runsc" || !strings.Contains(r.HarvestError, ".git") {
		t.Errorf("runtime %q, harvest error %q; want runsc and one about the missing .git", r.Runtime, r.HarvestError)
	}
}
