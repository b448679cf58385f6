package e2e

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// suite is what every test shares: the binary and the image, made once.
type suite struct {
	bin       string
	configDir string // XDG_CONFIG_HOME with the test configuration
	gateway   string // the host's address on the engine's bridge network
	// hostAddr is an address of this machine outside every container
	// bridge, for servers rootless Podman's containers reach (hostGateway).
	hostAddr string
	skip     string // why the tests cannot run here (outside CI)
}

var shared suite

// [sandbox] comes last: userConfig's extra may go on with its keys.
const testConfig = `[image]
base = "bootstrap"
ca_certificates = ["host"]

[engine.kubernetes]
namespace = "airlock"

[sandbox]
memory = "2g"
cpus = 1.0
pids = 1024
`

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "e2e: FAIL: cannot set up:", err)
			os.Exit(1)
		}
		shared.skip = err.Error()
	}
	if code != 0 {
		os.Exit(code)
	}
	before := testProjectImages()
	code = m.Run()
	// What the tests built for their projects (a new airlock binary makes
	// new ones every run, about 1 GB a run) and the binary's directory
	// would otherwise fill the machine's disk run after run. Under
	// scripts/test.sh another process of this package may be using the
	// images: the script removes them once both are done.
	for cli, refs := range testProjectImages() {
		if os.Getenv("AIRLOCK_E2E_SHARED") != "" {
			break
		}
		for _, ref := range refs {
			if !slices.Contains(before[cli], ref) {
				exec.Command(cli, "rmi", ref).Run()
			}
		}
	}
	if shared.bin != "" {
		os.RemoveAll(filepath.Dir(shared.bin))
	}
	os.Exit(code)
}

// testProjectImages lists, per rootful engine CLI, the images of projects
// named "repo": the tests' repositories.
func testProjectImages() map[string][]string {
	out := map[string][]string{}
	for _, cli := range []string{"docker", "podman"} {
		b, err := exec.Command(cli, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}").Output()
		if err != nil {
			continue
		}
		for _, ref := range strings.Fields(string(b)) {
			ref = strings.TrimPrefix(ref, "localhost/")
			if strings.HasPrefix(ref, image.ProjectRepoPrefix+"repo:") {
				out[cli] = append(out[cli], ref)
			}
		}
	}
	return out
}

func setup() (int, error) {
	ctx := context.Background()
	eng, err := sandbox.NewDocker()
	if err != nil {
		return 0, err
	}
	if err := eng.Ping(ctx); err != nil {
		return 0, fmt.Errorf("%w (run `make setup`)", err)
	}
	tmp, err := os.MkdirTemp("", "airlock-e2e-")
	if err != nil {
		return 1, err
	}
	// World-readable so a test can run the binary as another user.
	os.Chmod(tmp, 0o755)
	shared.bin = filepath.Join(tmp, "airlock")
	build := exec.Command("go", "build", "-o", shared.bin, "./cmd/airlock")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		return 1, nil
	}
	shared.configDir = filepath.Join(tmp, "config")
	if err := os.MkdirAll(filepath.Join(shared.configDir, "airlock"), 0o755); err != nil {
		return 1, err
	}
	if err := os.WriteFile(filepath.Join(shared.configDir, "airlock", "config.toml"), []byte(testConfig), 0o644); err != nil {
		return 1, err
	}
	// Build (or find) the image the tests use; fast when it exists.
	cmd := exec.Command(shared.bin, "image", "build")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+shared.configDir)
	cmd.Stdout = io.Discard
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: airlock image build: %v\n%s", err, tail(stderr.String(), 40))
		return 1, nil
	}
	if d := time.Since(start); d > 5*time.Second {
		fmt.Fprintf(os.Stderr, "e2e: built the image in %s\n", d.Round(time.Second))
	}
	if shared.gateway, err = eng.GatewayIP(ctx, "bridge"); err != nil {
		return 1, err
	}
	shared.hostAddr = hostGateway(shared.gateway)
	return 0, nil
}

func repoRoot() string {
	wd, _ := os.Getwd()
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return wd
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// env is one test's world: its own state dir, its own repository, its own
// scripted model server, on one engine.
type env struct {
	t      *testing.T
	state  string // XDG_STATE_HOME
	repo   string
	extra  []string
	engine engineKind
	user   *user.User // rootless Podman: the unprivileged user airlock runs as
	// configDir is the test's own XDG_CONFIG_HOME (userConfig), else "".
	configDir string
	// kubeconfig is the KUBECONFIG of a test on Kubernetes, when not the
	// test cluster's admin's.
	kubeconfig string
}

// config is XDG_CONFIG_HOME for the test's airlock.
func (e *env) config() string {
	if e.configDir != "" {
		return e.configDir
	}
	return shared.configDir
}

// userConfig gives the test's airlock a user config of its own: the
// shared test configuration, a blank line, then extra, whose first line is
// line userConfigOffset+1. What only the user may set (injected
// credentials, SSH keys, the proxy's trust) goes there, not in the
// repository's config. It returns the file's path.
func userConfig(t *testing.T, e *env, extra string) string {
	t.Helper()
	if e.configDir == "" {
		e.configDir = e.tempDir()
	}
	path := filepath.Join(e.configDir, "airlock", "config.toml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(testConfig+"\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	e.chown(e.configDir)
	return path
}

// userConfigOffset is how many lines come before extra in userConfig.
var userConfigOffset = strings.Count(testConfig+"\n", "\n")

// engineKind is the engine a test's airlock runs on, and as whom.
type engineKind int

const (
	onDocker         engineKind = iota
	onPodman                    // rootful, as root
	onRootlessPodman            // as the rootless test user, whose own Podman airlock finds
	onIncus                     // as root, AIRLOCK_ENGINE=incus
	onKubernetes                // as root, AIRLOCK_ENGINE=kubernetes, on the test cluster
)

func (k engineKind) String() string {
	return [...]string{"Docker", "Podman", "rootless Podman", "Incus", "Kubernetes"}[k]
}

// The engines a test body runs on (onEngines).
var (
	// hostEngines leave out rootful Podman: these tests are of what the
	// host does with a run (its files, transcript, budget, copies), and
	// rootful Podman brings the files home as Docker does, its quirks as
	// rootless Podman does. The tests of Podman itself (TestPodman*), the
	// core and the isolation attempts still run on it. Running all of
	// them there too took CI past its 90 minutes.
	hostEngines    = []engineKind{onDocker, onRootlessPodman, onIncus}
	rootfulEngines = []engineKind{onDocker, onPodman, onIncus}
	// gvisorEngines are those with OCI runtimes (Incus runs LXC).
	gvisorEngines = []engineKind{onDocker, onPodman, onRootlessPodman}
	// gvisorHeavyEngines are Docker alone, for the gVisor tests that take
	// minutes an engine under runsc's ptrace platform (the same runsc and
	// its kernel on every engine): TestGVisorWriteCommitMerge runs on all
	// three, and the rootless engine's own escapes are TestIsolation's.
	// Running them on rootless Podman too took CI past its 90 minutes.
	gvisorHeavyEngines = []engineKind{onDocker}
	// worldEngines are those the test world (newWorldOn: a network and
	// upstream containers answering made-up names) is built on; on Incus
	// the isolation attempts run without it (TestIncusIsolation).
	worldEngines = []engineKind{onDocker, onPodman, onRootlessPodman}
)

// onEngines runs body on a new env on each engine, as subtests named after
// them (-run 'TestX/^Podman$' picks one).
func onEngines(t *testing.T, kinds []engineKind, body func(t *testing.T, e *env)) {
	t.Helper()
	for _, k := range kinds {
		t.Run(k.String(), func(t *testing.T) { body(t, newEnvOn(t, k)) })
	}
}

func newEnv(t *testing.T) *env { t.Helper(); return newEnvOn(t, onDocker) }

// newEnvOn is newEnv on the given engine.
func newEnvOn(t *testing.T, k engineKind) *env {
	t.Helper()
	if shared.skip != "" {
		t.Skip("no container engine: ", shared.skip)
	}
	e := &env{t: t, engine: k}
	switch k {
	case onPodman:
		needPodman(t)
		rootfulPodmanImage(t)
	case onRootlessPodman:
		needPodman(t)
		e.user = rootlessUser(t)
		rootlessPodmanImage(t, e.user)
	case onIncus:
		needIncus(t)
		incusImage(t)
	case onKubernetes:
		needKubernetes(t)
	}
	e.state, e.repo = e.tempDir(), filepath.Join(e.tempDir(), "repo")
	e.initRepo()
	t.Cleanup(e.cleanup)
	return e
}

// tempDir is a new directory the test's user owns, removed at the end.
func (e *env) tempDir() string {
	e.t.Helper()
	if e.user == nil {
		return e.t.TempDir()
	}
	dir, err := os.MkdirTemp("", "airlock-e2e-rootless-")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { os.RemoveAll(dir) })
	e.chown(dir)
	return dir
}

// chown gives path (and what is under it) to the test's user, if not root.
func (e *env) chown(path string) {
	e.t.Helper()
	if e.user == nil {
		return
	}
	if out, err := exec.Command("chown", "-R", e.user.Uid+":"+e.user.Gid, path).CombinedOutput(); err != nil {
		e.t.Fatalf("chown: %v\n%s", err, out)
	}
}

// command is name with args, run in the repository with the test's
// environment, as the test's user.
func (e *env) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if e.user == nil {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = e.repo, e.environ()
		return cmd
	}
	cmd := rootlessCmd(e.user, e.repo, e.userEnviron(), name, args...)
	// The context's kill ends runuser only; callers that must not leave
	// airlock behind kill the process group (bounded).
	wrapped := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	wrapped.Dir = cmd.Dir
	return wrapped
}

// testEngine is an engine a test looks through, and closes.
type testEngine interface {
	sandbox.Engine
	Close() error
}

// sandboxEngine is the engine the test's airlock uses, for the test's own
// looks.
func (e *env) sandboxEngine() (testEngine, error) {
	switch e.engine {
	case onIncus:
		return sandbox.NewIncus("")
	case onKubernetes:
		return newKubeEngine()
	case onPodman:
		return sandbox.NewPodman("")
	case onRootlessPodman:
		return sandbox.NewPodman(sandbox.PodmanHost(func(k string) string {
			if k == "XDG_RUNTIME_DIR" {
				return "/run/user/" + e.user.Uid
			}
			return ""
		}, e.uid()))
	}
	return sandbox.NewDocker()
}

// waitContainer waits until a container of the env's engine has ended.
func (e *env) waitContainer(name string, timeout time.Duration) {
	e.t.Helper()
	eng, err := e.sandboxEngine()
	if err != nil {
		e.t.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := eng.Wait(ctx, name); err != nil {
		e.t.Fatalf("container %s on %s did not end: %v", name, e.engine, err)
	}
}

func (e *env) uid() int {
	if e.user == nil {
		return os.Getuid()
	}
	uid, _ := strconv.Atoi(e.user.Uid)
	return uid
}

func (e *env) gid() int {
	if e.user == nil {
		return os.Getgid()
	}
	gid, _ := strconv.Atoi(e.user.Gid)
	return gid
}

func (e *env) initRepo() {
	e.t.Helper()
	if err := os.MkdirAll(e.repo, 0o755); err != nil {
		e.t.Fatal(err)
	}
	e.chown(e.repo)
	e.git("init", "-q", "-b", "main")
	e.git("config", "user.name", "Test User")
	e.git("config", "user.email", "test@example.invalid")
	e.write("README.md", "# project\n")
	e.git("add", ".")
	e.git("commit", "-q", "-m", "initial")
}

// server starts a scripted model server reachable from containers.
func (e *env) server(s testkit.Script) (*testkit.Server, string) {
	e.t.Helper()
	srv := testkit.NewServer(s)
	url, err := srv.Start(e.gateway() + ":0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { srv.Close() })
	e.extra = []string{"ANTHROPIC_API_KEY=sk-ant-e2e-" + e.t.Name(), "ANTHROPIC_BASE_URL=" + url}
	return srv, url
}

func (e *env) environ() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN", "XDG_STATE_HOME", "XDG_CONFIG_HOME":
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "XDG_STATE_HOME="+e.state, "XDG_CONFIG_HOME="+e.config())
	switch e.engine {
	case onPodman:
		out = append(out, "AIRLOCK_ENGINE=podman")
	case onIncus:
		out = append(out, "AIRLOCK_ENGINE=incus")
	case onKubernetes:
		out = append(out, "AIRLOCK_ENGINE=kubernetes", "KUBECONFIG="+cmp.Or(e.kubeconfig, kubeconfigPath))
	}
	return append(out, e.extra...)
}

// userEnviron is the test's environment for the rootless user, on top of
// a login's: no engine named (a user outside the docker group who runs a
// rootless Podman gets it by autodetection).
func (e *env) userEnviron() []string {
	return append([]string{"XDG_STATE_HOME=" + e.state, "XDG_CONFIG_HOME=" + e.config()}, e.extra...)
}

type result struct {
	stdout, stderr string
	code           int
}

// airlock runs the binary in the test's repository.
func (e *env) airlock(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := e.command(ctx, shared.bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if exitErr, ok := err.(*exec.ExitError); ok {
		res.code = exitErr.ExitCode()
	} else if err != nil {
		e.t.Fatalf("airlock %v: %v", args, err)
	}
	return res
}

// in is e for subtest t: its failures end t, not the test that made e
// (a subtest may not end its parent).
func (e *env) in(t *testing.T) *env {
	sub := *e
	sub.t = t
	return &sub
}

// ok runs airlock and fails the test unless it exits 0.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	res := e.airlock(args...)
	if res.code != 0 {
		e.t.Fatalf("airlock %s: exit %d\nstdout:\n%s\nstderr:\n%s%s", strings.Join(args, " "), res.code, res.stdout, res.stderr, e.egressLogs(args...))
	}
	return res
}

// egressLogs is what the proxy logged for every run, when args (if any)
// was a run: a model request cut midway shows there with its reason.
func (e *env) egressLogs(args ...string) string {
	if len(args) > 0 && args[0] != "run" {
		return ""
	}
	ls := e.airlock("ls", "-a", "--json")
	var runs []store.Run
	if ls.code != 0 || json.Unmarshal([]byte(ls.stdout), &runs) != nil {
		return ""
	}
	var b strings.Builder
	for _, r := range runs {
		res := e.airlock("egress", "--json", r.ID)
		fmt.Fprintf(&b, "\negress log of %s:\n%s%s", r.ID, res.stdout, res.stderr)
	}
	return b.String()
}

func (e *env) runs() []store.Run {
	e.t.Helper()
	res := e.ok("ls", "-a", "--json")
	var runs []store.Run
	if err := json.Unmarshal([]byte(res.stdout), &runs); err != nil {
		e.t.Fatalf("ls --json: %v\n%s", err, res.stdout)
	}
	return runs
}

func (e *env) git(args ...string) string {
	e.t.Helper()
	cmd := exec.Command("git", args...)
	if e.user != nil {
		cmd = e.command(context.Background(), "git", args...)
	}
	cmd.Dir = e.repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (e *env) write(rel, content string) {
	e.t.Helper()
	path := filepath.Join(e.repo, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.chown(e.repo)
}

// mostAgents runs airlock with args and returns its result and the most
// agent containers of the test's project that ran at once meanwhile.
func (e *env) mostAgents(args ...string) (result, int) {
	e.t.Helper()
	eng, err := e.sandboxEngine()
	if err != nil {
		e.t.Fatal(err)
	}
	defer eng.Close()
	stop := make(chan struct{})
	most := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			states, err := eng.List(context.Background(), map[string]string{"airlock.project": e.repo, "airlock.role": "agent"})
			if err != nil {
				continue
			}
			n := 0
			for _, s := range states {
				if s.Status == sandbox.StatusRunning {
					n++
				}
			}
			most = max(most, n)
		}
	}()
	res := e.airlock(args...)
	close(stop)
	wg.Wait()
	return res, most
}

// cleanup removes the test's containers whatever happened.
func (e *env) cleanup() {
	runs, err := os.ReadDir(filepath.Join(e.state, "airlock", "runs"))
	if err != nil {
		return
	}
	eng, err := e.sandboxEngine()
	if err != nil {
		return
	}
	defer eng.Close()
	for _, r := range runs {
		// A detached run's watcher may still be writing into the run's
		// directory, which the test's own cleanup is about to remove.
		watcher := shared.bin + " watcher " + r.Name()
		exec.Command("pkill", "-KILL", "-f", watcher).Run()
		for i := 0; i < 50 && exec.Command("pgrep", "-f", watcher).Run() == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		eng.Remove(context.Background(), "airlock-"+r.Name())
		eng.Remove(context.Background(), "airlock-"+r.Name()+"-harvest")
		eng.Remove(context.Background(), "airlock-"+r.Name()+"-proxy")
	}
}

// treeHash hashes every file, link and mode under dir: equal hashes mean
// byte-for-byte equal trees.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var entries []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", rel, info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			line += " -> " + target
		case info.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += " " + hex.EncodeToString(sum[:])
		}
		entries = append(entries, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(entries)
	sum := sha256.Sum256([]byte(strings.Join(entries, "\n")))
	return hex.EncodeToString(sum[:])
}

// hostGateway is an address of this machine for servers that rootless
// Podman's containers reach. Their traffic leaves through slirp4netns, a
// process on the host: connecting to docker0's address, its connections
// would match Docker's MASQUERADE rule (-s 172.17.0.0/16 ! -o docker0),
// and such a masqueraded local connection was seen to stall for minutes
// once Docker's own containers had come and gone. An address of the
// machine's own interface is reached as directly, without NAT; packets to
// it never leave the machine. fallback is used when there is none.
func hostGateway(fallback string) string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fallback
	}
	bridge := func(name string) bool {
		for _, p := range []string{"docker", "br-", "podman", "veth", "airlockbr", "incusbr", "lxdbr", "cni", "virbr", "ifb"} {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || bridge(ifc.Name) {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	return fallback
}

// stopGroup sends sig to cmd's process group (started with Setpgid) and
// waits for cmd; after grace it kills the group.
func stopGroup(cmd *exec.Cmd, sig syscall.Signal, grace time.Duration) {
	syscall.Kill(-cmd.Process.Pid, sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}
