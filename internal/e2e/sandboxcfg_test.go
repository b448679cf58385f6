package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// bashStep is a scripted step running command with Claude Code's Bash tool.
func bashStep(command string) testkit.Step { return testkit.Step{Tool: "Bash", Input: bash(command)} }

// The user's [sandbox] mounts reach the agent: read-only unless :rw says
// otherwise; and a mount of the repository is refused, naming the entry and
// the reason, before anything is made.
func TestMounts(t *testing.T) { onEngines(t, hostEngines, mounts) }

func mounts(t *testing.T, e *env) {
	data, rw := e.tempDir(), e.tempDir()
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(data, 0o777) // were it writable, only the mount's read-only flag would stop the agent
	os.Chmod(rw, 0o777)
	e.chown(data)
	userConfig(t, e, `mounts = ["`+data+`:/data", "`+rw+`:/rw:rw"]`+"\n")
	e.server(testkit.Script{
		Name: "mounts",
		Steps: []testkit.Step{
			bashStep(`cat /data/hello.txt > seen.txt; (echo x > /data/new.txt && echo writable || echo read-only) > ro.txt; echo from the sandbox > /rw/out.txt; git add seen.txt ro.txt && git commit -qm mounts`),
		},
		FinalText: "Done.",
	})
	e.ok("run", "-y", "-m", "Use the mounts.", "--name", "mounts")
	r := e.runs()[0]
	if got := e.git("show", r.Branch+":seen.txt"); got != "from the host" {
		t.Errorf("the agent read %q from /data/hello.txt, want the host's file", got)
	}
	if got := e.git("show", r.Branch+":ro.txt"); got != "read-only" {
		t.Errorf("the read-only mount was %s to the agent", got)
	}
	if _, err := os.Stat(filepath.Join(data, "new.txt")); err == nil {
		t.Error("the agent wrote into the read-only mount")
	}
	if got, _ := os.ReadFile(filepath.Join(rw, "out.txt")); string(got) != "from the sandbox\n" {
		t.Errorf("the :rw mount has %q, want the agent's file", got)
	}
	if len(r.Mounts) != 2 || !strings.HasSuffix(r.Mounts[0], ":/data:ro") || !strings.HasSuffix(r.Mounts[1], ":/rw:rw") {
		t.Errorf("ls --json mounts = %q", r.Mounts)
	}

	// Refused: the repository itself, through a link. Nothing is made.
	link := filepath.Join(e.tempDir(), "repo-link")
	if err := os.Symlink(e.repo, link); err != nil {
		t.Fatal(err)
	}
	path := userConfig(t, e, `mounts = ["`+link+`:/src"]`+"\n")
	res := e.airlock("run", "-y", "-m", "Never runs.", "--name", "refused")
	if res.code == 0 || !strings.Contains(res.stderr, path+":") || !strings.Contains(res.stderr, `mount "`+link+`:/src" refused`) || !strings.Contains(res.stderr, "leads to "+e.repo) ||
		!strings.Contains(res.stderr, "is or contains the repository") {
		t.Errorf("a mount of the repository: exit %d\n%s", res.code, res.stderr)
	}
	if n := len(e.runs()); n != 1 {
		t.Errorf("%d runs after a refused mount, want the one before", n)
	}
	eng, err := e.sandboxEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	states, err := eng.List(context.Background(), map[string]string{"airlock.project": e.repo})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if strings.Contains(s.Name, "refused") {
			t.Errorf("a refused mount left container %s", s.Name)
		}
	}
}

// Setup commands from the config and the prompt run before the agent, as
// its user in /workspace, behind the run's proxy (a denied host is refused
// and logged), their output in `logs --setup`; a failing one fails the
// run, named with its exit status, and the agent never starts; a
// persistent run's setup is not repeated when it is started again.
func TestSetup(t *testing.T) { onEngines(t, hostEngines, setupCommands) }

func setupCommands(t *testing.T, e *env) {
	e.write(".airlock/config.toml", "[sandbox]\nsetup = [\"echo prepared > .setup-made; id -u >> .setup-made; pwd >> .setup-made\", \"curl -sS --max-time 20 https://denied.example/ || echo curl refused\"]\n")
	e.write(".airlock/prompts/use-setup.md", "---\nsetup: [\"echo from the prompt >> .setup-made; echo run >> /home/agent/setup-count\"]\n---\nUse what the setup made.\n")
	e.git("add", ".")
	e.git("commit", "-qm", "setup")
	srv, url := e.server(testkit.Script{
		Name:      "setup",
		Steps:     []testkit.Step{bashStep(`cp .setup-made seen.txt && git add seen.txt && git commit -qm seen`)},
		FinalText: "Done.",
	})
	e.ok("run", "-y", "--persistent", "use-setup")
	r := e.run("use-setup")
	uid := e.uid()
	if uid == 0 {
		uid = 1000 // airlock run as root runs the agent as the image's user
	}
	want := "prepared\n" + strconv.Itoa(uid) + "\n/workspace\nfrom the prompt"
	if got := e.git("show", r.Branch+":seen.txt"); got != want {
		t.Errorf("the agent saw %q from the setup, want %q", got, want)
	}
	if !r.SetupDone || len(r.Setup) != 3 {
		t.Errorf("the run's record: setup %q, done %v", r.Setup, r.SetupDone)
	}
	logs := e.ok("logs", "--setup", r.ID).stdout
	if !strings.Contains(logs, "$ curl -sS") || !strings.Contains(logs, "curl refused") || !strings.Contains(logs, "$ echo from the prompt") {
		t.Errorf("logs --setup:\n%s", logs)
	}
	if eg := e.ok("egress", "--json", r.ID).stdout; !strings.Contains(eg, "denied.example") {
		t.Errorf("the setup's refused connection is not in the egress log:\n%s", eg)
	}

	// Started again: the setup is not repeated.
	srv.Close()
	next := testkit.NewServer(testkit.Resumed(1, testkit.Script{
		Name:      "again",
		Steps:     []testkit.Step{bashStep(`cp /home/agent/setup-count count.txt && git add count.txt && git commit -qm count`)},
		FinalText: "Done again.",
	}))
	if _, err := next.Start(strings.TrimPrefix(url, "http://")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })
	e.ok("start", r.ID, "-m", "Count the setups.")
	e.ok("wait", r.ID)
	r = e.run(r.ID)
	if got := e.git("show", r.Branch+":count.txt"); got != "run" {
		t.Errorf("after start, the setup had run %q, want once", got)
	}

	// A failing command fails the run; the agent does not start.
	e.write(".airlock/config.toml", "[sandbox]\nsetup = [\"true\", \"echo about to fail; exit 7\"]\n")
	e.git("commit", "-qam", "failing setup")
	failSrv, _ := e.server(testkit.DemoScript())
	res := e.airlock("run", "-y", "-m", "Never starts.", "--name", "failing")
	if !slices.ContainsFunc(e.runs(), func(r store.Run) bool { return r.Name == "failing" }) {
		t.Fatalf("no run failing in ls after airlock run: exit %d\n%s", res.code, res.stderr)
	}
	f := e.run("failing")
	wantErr := `setup command 2 of 2, "echo about to fail; exit 7", exited with status 7`
	if res.code == 0 || f.Status != store.StatusFailed || !strings.Contains(f.Error, wantErr) || !strings.Contains(res.stderr, wantErr) {
		t.Errorf("a failing setup: exit %d, status %s, error %q\n%s", res.code, f.Status, f.Error, res.stderr)
	}
	if n := len(failSrv.Requests()); n != 0 {
		t.Errorf("the agent started after a failed setup: %d model requests", n)
	}
	if logs := e.ok("logs", "--setup", f.ID).stdout; !strings.Contains(logs, "about to fail") || !strings.Contains(logs, "exited with status 7") {
		t.Errorf("logs --setup of the failed run:\n%s", logs)
	}
}

// -p: a server the agent starts on its loopback is reachable on the
// host's loopback while the run is alive, detached (the watcher forwards)
// or attached, and the port is closed once the run has ended.
func TestPorts(t *testing.T) { onEngines(t, hostEngines, ports) }

func ports(t *testing.T, e *env) {
	serve := testkit.Script{
		Name: "serve",
		Steps: []testkit.Step{
			bashStep(`mkdir -p /tmp/www && echo "served from the sandbox" > /tmp/www/index.html && (nohup python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp/www >/tmp/http.log 2>&1 &) && sleep 1 && echo started`),
			bashStep(`for i in $(seq 500); do [ -e /workspace/.stop ] && break; sleep 0.2; done; echo stopped`),
		},
		FinalText: "Served.",
	}
	e.server(serve)
	before := len(e.runs())
	check := func(name string, port int) {
		t.Helper()
		url := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
		var body string
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if resp, err := http.Get(url); err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if body = string(b); strings.Contains(body, "served from the sandbox") {
					break
				}
			}
		}
		if !strings.Contains(body, "served from the sandbox") {
			t.Fatalf("%s: %s never served the agent's page (last: %q)", name, url, body)
		}
		r := e.run(name)
		if want := "127.0.0.1:" + strconv.Itoa(port) + "->8000"; len(r.Ports) != 1 || r.Ports[0] != want {
			t.Errorf("%s: ls --json ports = %q, want %q", name, r.Ports, want)
		}
		if e.engine == onKubernetes {
			// The pod's workspace is a copy: the file goes in by exec.
			e.ok("exec", name, "--", "touch", "/workspace/.stop")
		} else if err := os.WriteFile(filepath.Join(e.runDir(r.ID), "workspace", ".stop"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	closed := func(name string, port int) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err != nil {
				return
			}
			c.Close()
			if time.Now().After(deadline) {
				t.Fatalf("%s: port %d still open after the run ended", name, port)
			}
		}
	}

	port := freePort(t)
	e.ok("run", "-y", "-d", "-p", strconv.Itoa(port)+":8000", "-m", "Serve a page.", "--name", "detached")
	check("detached", port)
	e.ok("wait", "detached")
	closed("detached", port)

	port = freePort(t)
	done := make(chan result, 1)
	go func() {
		done <- e.airlock("run", "-y", "-p", strconv.Itoa(port)+":8000", "-m", "Serve a page.", "--name", "attached")
	}()
	check("attached", port)
	if res := <-done; res.code != 0 {
		t.Fatalf("attached run: exit %d\n%s", res.code, res.stderr)
	}
	closed("attached", port)

	// Refused before anything is made: another address than loopback, a
	// port airlock's relay uses, a host port in use.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for spec, want := range map[string]string{
		"0.0.0.0:8080:8000": "listens on the host's loopback (127.0.0.1) only",
		"3128":              "airlock's own relay to the egress proxy",
		strconv.Itoa(busy.Addr().(*net.TCPAddr).Port) + ":8000": "in use",
	} {
		if res := e.airlock("run", "-y", "-p", spec, "-m", "Never runs.", "--name", "refused"); res.code == 0 || !strings.Contains(res.stderr, want) {
			t.Errorf("-p %s: exit %d\n%s", spec, res.code, res.stderr)
		}
	}
	if n := len(e.runs()) - before; n != 2 {
		t.Errorf("%d new runs after refused -p, want 2", n)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// A persistent run brought back with start has its ports forwarded again.
func TestPortsAfterStart(t *testing.T) {
	e := newEnv(t)
	serve := testkit.Script{
		Name: "serve",
		Steps: []testkit.Step{
			bashStep(`rm -f /workspace/.stop; mkdir -p /tmp/www && echo "served from the sandbox" > /tmp/www/index.html && (nohup python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp/www >/tmp/http.log 2>&1 &) && sleep 1 && echo started`),
			bashStep(`for i in $(seq 500); do [ -e /workspace/.stop ] && break; sleep 0.2; done; echo stopped`),
		},
		FinalText: "Served.",
	}
	srv, url := e.server(serve)
	port := freePort(t)
	get := func() string {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitServed := func(leg string) {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); !strings.Contains(get(), "served from the sandbox"); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the forwarded port never served the agent's page", leg)
			}
		}
	}
	e.ok("run", "-y", "-d", "--persistent", "-p", strconv.Itoa(port)+":8000", "-m", "Serve a page.", "--name", "again")
	r := e.run("again")
	waitServed("first leg")
	stop := filepath.Join(e.runDir(r.ID), "workspace", ".stop")
	os.WriteFile(stop, nil, 0o644)
	e.ok("wait", r.ID)

	srv.Close()
	next := testkit.NewServer(testkit.Resumed(2, serve))
	if _, err := next.Start(strings.TrimPrefix(url, "http://")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })
	e.ok("start", r.ID, "-m", "Serve it again.")
	waitServed("after start")
	os.WriteFile(stop, nil, 0o644)
	e.ok("wait", r.ID)
	for deadline := time.Now().Add(30 * time.Second); get() != ""; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the port stayed open after the second leg")
		}
	}
}
