package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// The Podman e2e: the core run → diff → merge with the real Claude Code and
// the scripted model, and the isolation attempts that need no test hosts,
// on rootful Podman (as root) and on rootless Podman (as the unprivileged
// test user scripts/setup.sh creates). The engine is chosen the way a user
// chooses it: AIRLOCK_ENGINE=podman.

// podmanImages makes the default image once per Podman: built through
// Podman's own API for rootful Podman, and copied from there into the
// rootless user's store (the image's base is made with debootstrap, which
// needs root).
var podmanImages struct {
	rootfulOnce, rootlessOnce sync.Once
	ref                       string
	rootfulErr, rootlessErr   error
}

// needPodman skips (or on CI fails) a test when Podman does not answer.
func needPodman(t testing.TB) {
	t.Helper()
	if shared.skip != "" {
		t.Skip("no container engine: ", shared.skip)
	}
	if os.Getuid() != 0 {
		t.Skip("the Podman e2e runs as root (rootless Podman as its test user)")
	}
	p, err := sandbox.NewPodman("")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs Podman (scripts/setup.sh starts it): %v", err)
		}
		t.Skipf("no Podman: %v", err)
	}
}

// rootfulPodmanImage builds the default image on rootful Podman with
// `airlock image build`, as a user would.
func rootfulPodmanImage(t testing.TB) string {
	t.Helper()
	podmanImages.rootfulOnce.Do(func() {
		copyDockerBases()
		podmanImages.ref, podmanImages.rootfulErr = buildImageOn(t, "podman")
	})
	if podmanImages.rootfulErr != nil {
		t.Fatal(podmanImages.rootfulErr)
	}
	return podmanImages.ref
}

// copyDockerBases copies the bootstrap bases Docker has (the e2e's setup
// made one) into rootful Podman, to save a minute or two of debootstrap: the
// image itself is still built through Podman's build API. Failures only
// cost that time.
func copyDockerBases() {
	out, err := exec.Command("docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "airlock-base").Output()
	if err != nil {
		return
	}
	for _, ref := range strings.Fields(string(out)) {
		if exec.Command("podman", "image", "exists", ref).Run() == nil {
			continue
		}
		save := exec.Command("docker", "save", ref)
		load := exec.Command("podman", "load")
		pipe, err := save.StdoutPipe()
		if err != nil {
			return
		}
		load.Stdin = pipe
		if save.Start() != nil {
			return
		}
		load.Run()
		save.Wait()
	}
}

// rootlessPodmanImage copies the rootful image into u's rootless store.
func rootlessPodmanImage(t testing.TB, u *user.User) {
	t.Helper()
	ref := rootfulPodmanImage(t)
	podmanImages.rootlessOnce.Do(func() {
		if out, err := asUser(u, "", nil, "podman", "image", "exists", ref); err == nil {
			return
		} else if !strings.Contains(fmt.Sprint(err), "exit status 1") {
			podmanImages.rootlessErr = fmt.Errorf("podman image exists as %s: %v\n%s", u.Username, err, out)
			return
		}
		save := exec.Command("podman", "save", ref)
		load := rootlessCmd(u, "", nil, "podman", "load")
		pipe, err := save.StdoutPipe()
		if err != nil {
			podmanImages.rootlessErr = err
			return
		}
		load.Stdin = pipe
		var saveErr, loadOut bytes.Buffer
		save.Stderr = &saveErr
		load.Stdout, load.Stderr = &loadOut, &loadOut
		if err := save.Start(); err != nil {
			podmanImages.rootlessErr = err
			return
		}
		loadErr := load.Run()
		if err := save.Wait(); err != nil || loadErr != nil {
			podmanImages.rootlessErr = fmt.Errorf("podman save %s | podman load (as %s): %v, %v\n%s%s", ref, u.Username, err, loadErr, saveErr.String(), loadOut.String())
		}
	})
	if podmanImages.rootlessErr != nil {
		t.Fatal(podmanImages.rootlessErr)
	}
}

// rootlessUser is the test user whose rootless Podman the tests use.
func rootlessUser(t testing.TB) *user.User {
	t.Helper()
	name := testkit.RootlessUser()
	u, err := user.Lookup(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs the rootless test user %s (scripts/setup.sh creates it): %v", name, err)
		}
		t.Skipf("no rootless test user %s (scripts/setup.sh creates it): %v", name, err)
	}
	return u
}

// rootlessCmd is a command run as u through runuser, with the environment
// a login would give u plus extra, in dir.
func rootlessCmd(u *user.User, dir string, extra []string, name string, args ...string) *exec.Cmd {
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
		"HOME=" + u.HomeDir,
		"USER=" + u.Username,
		"XDG_RUNTIME_DIR=/run/user/" + u.Uid,
	}
	env = append(env, extra...)
	cmd := exec.Command("runuser", append([]string{"-u", u.Username, "--", "env", "-i"}, append(env, append([]string{name}, args...)...)...)...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = "/"
	}
	return cmd
}

func asUser(u *user.User, dir string, extra []string, name string, args ...string) (string, error) {
	out, err := rootlessCmd(u, dir, extra, name, args...).CombinedOutput()
	return string(out), err
}

// podmanCleanup removes a state directory's run containers from a Podman,
// after their watchers.
func podmanCleanup(t *testing.T, state string, eng *sandbox.Docker) {
	t.Cleanup(func() {
		runs, _ := os.ReadDir(filepath.Join(state, "airlock", "runs"))
		for _, r := range runs {
			// A detached run's watcher may still write into the run's
			// directory, which the test's cleanup removes next.
			watcher := shared.bin + " watcher " + r.Name()
			exec.Command("pkill", "-KILL", "-f", watcher).Run()
			for i := 0; i < 50 && exec.Command("pgrep", "-f", watcher).Run() == nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			for _, suffix := range []string{"", "-harvest", "-proxy"} {
				eng.Remove(context.Background(), "airlock-"+r.Name()+suffix)
			}
		}
	})
}

// Rootful Podman: a run writes and commits, merge brings the commit home,
// and the run's containers were Podman's, not Docker's.
func TestPodmanWriteCommitMerge(t *testing.T) {
	needPodman(t)
	rootfulPodmanImage(t)
	e := newEnv(t)
	srv, _ := e.server(testkit.DemoScript())
	e.extra = append(e.extra, "AIRLOCK_ENGINE=podman")
	p, err := sandbox.NewPodman("")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	podmanCleanup(t, e.state, p)

	res := e.ok("run", "-m", "Write hello.py, run it, commit it.", "--name", "hello")
	if out := res.stdout + res.stderr; !strings.Contains(out, "python3 hello.py") || !strings.Contains(out, "succeeded") {
		t.Errorf("run output lacks the tool call or the outcome:\n%s", out)
	}
	sawKey := false
	for _, r := range srv.Requests() {
		sawKey = sawKey || r.APIKey() == "sk-ant-e2e-"+t.Name()
	}
	if !sawKey {
		t.Error("the model server never received the API key")
	}
	runs := e.runs()
	if len(runs) != 1 || runs[0].Status != store.StatusSucceeded {
		t.Fatalf("runs = %+v", runs)
	}
	r := runs[0]
	// The container was Podman's: Docker never saw it.
	if st, err := p.Inspect(context.Background(), r.Container); err != nil || st.Status != sandbox.StatusExited || st.ExitCode != 0 {
		t.Errorf("Podman's view of the agent container: %+v, %v; want exited 0", st, err)
	}
	if out, err := exec.Command("docker", "inspect", r.Container).CombinedOutput(); err == nil {
		t.Errorf("Docker knows the agent container %s; the run did not use Podman:\n%s", r.Container, out)
	}
	if diff := e.ok("diff").stdout; !strings.Contains(diff, "Hello from airlock") {
		t.Errorf("diff lacks the new file:\n%s", diff)
	}
	e.ok("merge")
	if got := e.git("log", "-1", "--format=%s"); got != "Add hello.py" {
		t.Fatalf("after merge HEAD is %q", got)
	}
	e.ok("rm", "-y")
	if _, err := p.Inspect(context.Background(), r.Container); err == nil {
		t.Errorf("rm left the agent container %s in Podman", r.Container)
	}
}

// rootlessEnv is one test's world as the rootless test user: a repository
// and state directory of the user's, a scripted model server, and the
// user's own Podman, which airlock finds by itself.
type rootlessEnv struct {
	t        *testing.T
	u        *user.User
	uid, gid int
	repo     string
	state    string
	env      []string
	srv      *testkit.Server
	key      string
	url      string // the model server's
	podman   *sandbox.Docker
}

func newRootlessEnv(t *testing.T, script testkit.Script) *rootlessEnv {
	t.Helper()
	needPodman(t)
	u := rootlessUser(t)
	rootlessPodmanImage(t, u)
	e := &rootlessEnv{t: t, u: u, key: "sk-ant-e2e-rootless-" + randHex(16)}
	e.uid, _ = strconv.Atoi(u.Uid)
	e.gid, _ = strconv.Atoi(u.Gid)
	base, err := os.MkdirTemp("", "airlock-podman-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chown(base, e.uid, e.gid); err != nil {
		t.Fatal(err)
	}
	e.repo, e.state = filepath.Join(base, "repo"), filepath.Join(base, "state")
	e.srv = testkit.NewServer(script)
	if e.url, err = e.srv.Start(shared.hostAddr + ":0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.srv.Close() })
	e.env = []string{
		"XDG_STATE_HOME=" + e.state, "XDG_CONFIG_HOME=" + shared.configDir,
		// No engine named: a user outside the docker group who runs a
		// rootless Podman gets it by autodetection, though the Docker
		// socket is there too.
		"ANTHROPIC_API_KEY=" + e.key, "ANTHROPIC_BASE_URL=" + e.url,
		"GIT_AUTHOR_NAME=Test User", "GIT_AUTHOR_EMAIL=test@example.invalid",
		"GIT_COMMITTER_NAME=Test User", "GIT_COMMITTER_EMAIL=test@example.invalid",
	}
	if _, err := asUser(u, base, nil, "mkdir", e.repo); err != nil {
		t.Fatal(err)
	}
	e.run("git", "init", "-q", "-b", "main")
	e.run("sh", "-c", "echo '# project' > README.md && git add . && git commit -qm initial")
	e.podman, err = sandbox.NewPodman(sandbox.PodmanHost(func(k string) string {
		if k == "XDG_RUNTIME_DIR" {
			return "/run/user/" + u.Uid
		}
		return ""
	}, e.uid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.podman.Close() })
	podmanCleanup(t, e.state, e.podman)
	return e
}

// try runs name as the user in the repository and returns its combined
// output and error.
func (e *rootlessEnv) try(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := rootlessCmd(e.u, e.repo, e.env, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Kill()
		err = <-done
	}
	return out.String(), err
}

// run is try, failing the test unless the command succeeds.
func (e *rootlessEnv) run(name string, args ...string) string {
	e.t.Helper()
	out, err := e.try(name, args...)
	if err != nil {
		e.t.Fatalf("%s %s as %s: %v\n%s", name, strings.Join(args, " "), e.u.Username, err, out)
	}
	return out
}

// owner fails the test unless path belongs to the user on the host.
func (e *rootlessEnv) owned(path string) {
	e.t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		e.t.Fatalf("%s: %v", path, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != e.uid || int(st.Gid) != e.gid {
		e.t.Errorf("%s is owned by %d:%d on the host, want the user's %d:%d", path, st.Uid, st.Gid, e.uid, e.gid)
	}
}

// Rootless Podman, as an unprivileged user: the run succeeds, the agent's
// files in the run's copy belong to the user (keep-id), the proxy's sockets
// in the shared directory work across the user namespace, and merge brings
// the commit into the user's repository.
func TestPodmanRootlessWriteCommitMerge(t *testing.T) {
	e := newRootlessEnv(t, testkit.DemoScript())
	run, srv, key, p, state := e.run, e.srv, e.key, e.podman, e.state

	out := run(shared.bin, "run", "-m", "Write hello.py, run it, commit it.", "--name", "hello")
	if !strings.Contains(out, "python3 hello.py") || !strings.Contains(out, "succeeded") {
		t.Errorf("run output lacks the tool call or the outcome:\n%s", out)
	}
	sawKey := false
	for _, r := range srv.Requests() {
		sawKey = sawKey || r.APIKey() == key
	}
	if !sawKey {
		t.Error("the model server never received the API key")
	}
	var all []store.Run
	if ls := run(shared.bin, "ls", "-a", "--json"); json.Unmarshal([]byte(ls), &all) != nil || len(all) != 1 {
		t.Fatalf("ls --json: %s", ls)
	}
	r := all[0]
	if r.Status != store.StatusSucceeded {
		t.Fatalf("run %s: status %s (%s)", r.ID, r.Status, r.Error)
	}
	if rootless, err := p.Rootless(context.Background()); err != nil || !rootless {
		t.Fatalf("the test user's Podman: rootless = %v, %v", rootless, err)
	}
	// Limits the engine drops are not dropped silently.
	if why, err := p.LimitsIgnored(context.Background()); err != nil || why != "" && !strings.Contains(out, why) {
		t.Errorf("the engine drops limits (%q, %v) and the run did not say so:\n%s", why, err, out)
	}
	// What the agent made in its copy belongs to the user on the host.
	e.owned(filepath.Join(state, "airlock", "runs", r.ID, "workspace", "hello.py"))
	if diff := run(shared.bin, "diff"); !strings.Contains(diff, "Hello from airlock") {
		t.Errorf("diff lacks the new file:\n%s", diff)
	}
	run(shared.bin, "merge")
	if got := strings.TrimSpace(run("git", "log", "-1", "--format=%s")); got != "Add hello.py" {
		t.Fatalf("after merge HEAD is %q", got)
	}
	run(shared.bin, "rm", "-y")
}

// The isolation attempts that need no test hosts, from inside a run on
// Podman (rootful): only loopback, no route, no engine socket, no proxy
// files, no real key, and the proxy refuses unlisted and forbidden
// destinations before dialling.
func TestPodmanIsolation(t *testing.T) {
	needPodman(t)
	rootfulPodmanImage(t)
	e := newEnv(t)
	p, err := sandbox.NewPodman("")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	podmanCleanup(t, e.state, p)

	srv, url := e.server(runScript("isolation", "sh attempts.sh > results.txt 2>&1; echo finished"))
	e.extra = append(e.extra, "AIRLOCK_ENGINE=podman")
	realKey := "sk-ant-api03-" + randHex(80)
	setAPIKey(e, realKey)
	attempts, vars, files := podmanIsolation(t, url)
	runAttempts(t, e, srv, realKey, attempts, vars, files)
}

// podmanIsolation is the subset of the isolation attempts that needs no
// test hosts, plus a direct connection to the model server on the host
// (serverURL), and the files that make them (for the project's repository).
func podmanIsolation(t *testing.T, serverURL string) ([]attempt, *strings.Replacer, map[string]string) {
	t.Helper()
	return isolationAttemptsVia(t, shared.gateway, serverURL)
}

// isolationAttemptsVia is podmanIsolation for an engine whose sandboxes
// reach the host at gateway.
func isolationAttemptsVia(t *testing.T, gateway, serverURL string) ([]attempt, *strings.Replacer, map[string]string) {
	t.Helper()
	names := []string{
		"network interface besides lo", "a route out", "IPv6 address besides loopback",
		"DNS lookup of an external name", "container engine or other outside socket",
		"capabilities or new privileges", "the proxy's files", "a real credential in the environment",
		"plain GET to a non-listed host", "CONNECT to a non-listed host",
		"listed name pinned to 169.254.169.254", "listed name pinned to 10.x", "listed name pinned to 127.0.0.1",
	}
	var attempts []attempt
	for _, name := range names {
		found := false
		for _, a := range allowlistAttempts {
			if a.name == name {
				attempts, found = append(attempts, a), true
			}
		}
		if !found {
			t.Fatalf("no isolation attempt named %q", name)
		}
	}
	attempts = append(attempts, attempt{name: "direct TCP to the model server on the host", script: `py tcp {D0} {SP}`, want: "failed"})
	vars := strings.NewReplacer("{D0}", gateway, "{SP}", serverURL[strings.LastIndex(serverURL, ":")+1:], "{PLACEHOLDER}", agent.PlaceholderAPIKey)
	ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	return attempts, vars, map[string]string{
		".airlock/config.toml": `[egress]
allow = ["allowed.test", "meta.test", "ten.test", "loop.test"]
extra_hosts = ["meta.test:169.254.169.254", "ten.test:10.20.30.40", "loop.test:127.0.0.1"]
`,
		"ca.pem":      string(ca),
		"iso.py":      isoPy,
		"attempts.sh": attemptsScript(attempts, vars),
	}
}

// The same attempts from a run on rootless Podman, whose networks are not
// the host's but its own user namespace's, reaching out through slirp4netns.
func TestPodmanRootlessIsolation(t *testing.T) {
	e := newRootlessEnv(t, runScript("isolation", "sh attempts.sh > results.txt 2>&1; echo finished"))
	attempts, vars, files := podmanIsolation(t, e.url)
	for name, content := range files {
		path := filepath.Join(e.repo, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "-R", e.u.Uid+":"+e.u.Gid, e.repo).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	e.run("git", "add", ".")
	e.run("git", "commit", "-qm", "isolation attempts")

	e.run(shared.bin, "run", "-y", "-m", "Try to get out.", "--name", "escape")
	runs, err := os.ReadDir(filepath.Join(e.state, "airlock", "runs"))
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v, %v", runs, err)
	}
	id := runs[0].Name()
	ws := filepath.Join(e.state, "airlock", "runs", id, "workspace")
	checkAttempts(t, attempts, vars, filepath.Join(ws, "results.txt"), auditRecords(t, e.state, id))
	for _, q := range e.srv.Requests() {
		if q.APIKey() != e.key {
			t.Errorf("%s %s carried %q, want the real key (injected by the proxy)", q.Method, q.Path, q.APIKey())
		}
	}
}

// Rootless Podman: exec and cp on a running sandbox go through Podman's
// exec and archive endpoints as the user, and what they make is the user's.
func TestPodmanRootlessExecCp(t *testing.T) {
	e := newRootlessEnv(t, testkit.BashScript("wait", "sleep 60"))
	started := e.run(shared.bin, "run", "-d", "-y", "-m", "Wait.", "--name", "live")
	m := regexp.MustCompile(`Started (live-[0-9a-f]+) `).FindStringSubmatch(started)
	if m == nil {
		t.Fatalf("run -d did not name the run:\n%s", started)
	}
	id := m[1]
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := e.try(shared.bin, "exec", id, "--", "id", "-u")
		if err == nil {
			if strings.TrimSpace(out) != e.u.Uid {
				t.Fatalf("exec id -u = %q, want the user's uid %s", out, e.u.Uid)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("exec never worked: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	e.run("sh", "-c", "echo from the host > note.txt")
	e.run(shared.bin, "cp", "note.txt", id+":/workspace/")
	if out := e.run(shared.bin, "exec", id, "--", "cat", "/workspace/note.txt"); !strings.Contains(out, "from the host") {
		t.Errorf("cp in: the sandbox sees %q", out)
	}
	e.run(shared.bin, "exec", id, "--", "sh", "-c", "echo from the sandbox > /workspace/made.txt")
	e.owned(filepath.Join(e.state, "airlock", "runs", id, "workspace", "made.txt"))
	e.owned(filepath.Join(e.state, "airlock", "runs", id, "workspace", "note.txt"))
	e.run(shared.bin, "cp", id+":/workspace/made.txt", "made-out.txt")
	if data, err := os.ReadFile(filepath.Join(e.repo, "made-out.txt")); err != nil || string(data) != "from the sandbox\n" {
		t.Errorf("cp out: %q, %v", data, err)
	}
	e.owned(filepath.Join(e.repo, "made-out.txt"))
	e.run(shared.bin, "stop", id)
}

// Rootless Podman: a run continued with --resume carries the earlier run's
// conversation, which the agent left in its home as the user.
func TestPodmanRootlessResume(t *testing.T) {
	e := newRootlessEnv(t, testkit.Script{
		Name:      "remember",
		Steps:     []testkit.Step{{Text: "Noted.", Tool: "Bash", Input: bash("echo first-run-tool-output")}},
		FinalText: "I will remember it.",
	})
	word := "PINEAPPLE-" + randHex(8)
	e.run(shared.bin, "run", "-y", "-m", "Remember the word "+word, "--name", "first")
	before := len(e.srv.Requests())
	e.run(shared.bin, "run", "-y", "-m", "Which word?", "--name", "second", "--resume", "first")
	var runs []store.Run
	if ls := e.run(shared.bin, "ls", "-a", "--json"); json.Unmarshal([]byte(ls), &runs) != nil || len(runs) != 2 {
		t.Fatalf("ls --json: %s", ls)
	}
	for _, r := range runs {
		if r.Status != store.StatusSucceeded {
			t.Errorf("run %s: %s (%s)", r.Name, r.Status, r.Error)
		}
	}
	reqs := mainRequests(e.srv.Requests()[before:])
	if len(reqs) == 0 || !strings.Contains(string(reqs[0].Body), word) || !strings.Contains(string(reqs[0].Body), "first-run-tool-output") {
		t.Fatalf("the resumed run's first request does not carry the earlier conversation (%d requests)", len(reqs))
	}
}

// buildImageOn builds the default agent image on engine with airlock
// itself, as a user would, and returns its reference.
func buildImageOn(t testing.TB, engine string) (string, error) {
	cmd := exec.Command(shared.bin, "image", "build")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+shared.configDir, "AIRLOCK_ENGINE="+engine)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("airlock image build on %s: %v\n%s", engine, err, tail(stderr.String(), 40))
	}
	lines := strings.Fields(stdout.String())
	if len(lines) == 0 {
		return "", fmt.Errorf("airlock image build on %s printed no image:\n%s", engine, tail(stderr.String(), 20))
	}
	ref := lines[len(lines)-1]
	t.Logf("the image %s on %s took %s", ref, engine, time.Since(start).Round(time.Second))
	return ref, nil
}

// Many runs start at once on one rootless Podman: each container it makes
// in the keep-id user namespace has Podman 4.3 read the user's subordinate
// ids through libsubid, which two threads must not call at once (the API
// service died of a SIGSEGV in subid_get_gid_ranges under the e2e suite,
// and every later run found no engine). Here, as if from separate airlock
// processes, with a client each.
func TestPodmanRootlessManyAtOnce(t *testing.T) {
	needPodman(t)
	u := rootlessUser(t)
	rootlessPodmanImage(t, u)
	host := sandbox.PodmanHost(func(k string) string {
		if k == "XDG_RUNTIME_DIR" {
			return "/run/user/" + u.Uid
		}
		return ""
	}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const n = 32
	prefix := fmt.Sprintf("airlock-e2e-many-%d-", time.Now().UnixNano())
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := sandbox.NewPodman(host)
			if err != nil {
				errs[i] = err
				return
			}
			defer p.Close()
			_, errs[i] = p.Create(ctx, sandbox.Spec{
				Name:  prefix + strconv.Itoa(i),
				Image: podmanImages.ref,
				Cmd:   []string{"true"},
				User:  u.Uid + ":" + u.Gid,
			})
		}()
	}
	wg.Wait()
	p, err := sandbox.NewPodman(host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	t.Cleanup(func() {
		for i := range n {
			p.Remove(context.Background(), prefix+strconv.Itoa(i))
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("create %d of %d: %v", i+1, n, err)
		}
	}
	if err := p.Ping(ctx); err != nil {
		t.Fatalf("rootless Podman's API service is gone after %d creates at once: %v", n, err)
	}
}

// `airlock image build` makes the default image on each engine of this
// machine (rootless Podman gets a copy of rootful Podman's: its base is made
// with debootstrap, which needs root). scripts/test.sh runs this first, so
// the test processes it starts next find the images made and never build
// one at the same time.
func TestImageBuildOnEngines(t *testing.T) {
	t.Run("Podman", func(t *testing.T) {
		needPodman(t)
		ref := rootfulPodmanImage(t)
		if out, err := exec.Command("podman", "image", "exists", ref).CombinedOutput(); err != nil {
			t.Errorf("podman image exists %s: %v %s", ref, err, out)
		}
		u := rootlessUser(t)
		rootlessPodmanImage(t, u)
		if out, err := asUser(u, "", nil, "podman", "image", "exists", ref); err != nil {
			t.Errorf("podman image exists %s as %s: %v %s", ref, u.Username, err, out)
		}
	})
	t.Run("Incus", func(t *testing.T) {
		needIncus(t)
		ref := incusImage(t)
		if out, err := exec.Command("incus", "image", "info", "local:"+ref).CombinedOutput(); err != nil {
			t.Errorf("incus image info %s: %v %s", ref, err, out)
		}
	})
}
