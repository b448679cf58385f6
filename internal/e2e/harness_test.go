package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// suite is what every test shares: the binary and the image, made once.
type suite struct {
	bin       string
	configDir string // XDG_CONFIG_HOME with the test configuration
	gateway   string // the host's address on the engine's bridge network
	skip      string // why the tests cannot run here (outside CI)
}

var shared suite

const testConfig = `[image]
base = "bootstrap"
ca_certificates = ["host"]

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
	code = m.Run()
	os.Exit(code)
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
// scripted model server.
type env struct {
	t     *testing.T
	state string // XDG_STATE_HOME
	repo  string
	extra []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if shared.skip != "" {
		t.Skip("no container engine: ", shared.skip)
	}
	e := &env{t: t, state: t.TempDir(), repo: filepath.Join(t.TempDir(), "repo")}
	e.initRepo()
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) initRepo() {
	e.t.Helper()
	if err := os.MkdirAll(e.repo, 0o755); err != nil {
		e.t.Fatal(err)
	}
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
	url, err := srv.Start(shared.gateway + ":0")
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
	out = append(out, "XDG_STATE_HOME="+e.state, "XDG_CONFIG_HOME="+shared.configDir)
	return append(out, e.extra...)
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
	cmd := exec.CommandContext(ctx, shared.bin, args...)
	cmd.Dir = e.repo
	cmd.Env = e.environ()
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

// ok runs airlock and fails the test unless it exits 0.
func (e *env) ok(args ...string) result {
	e.t.Helper()
	res := e.airlock(args...)
	if res.code != 0 {
		e.t.Fatalf("airlock %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res
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
}

// mostAgents runs airlock with args and returns its result and the most
// agent containers of the test's project that ran at once meanwhile.
func (e *env) mostAgents(args ...string) (result, int) {
	e.t.Helper()
	eng, err := sandbox.NewDocker()
	if err != nil {
		e.t.Fatal(err)
	}
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
	eng, err := sandbox.NewDocker()
	if err != nil {
		return
	}
	for _, r := range runs {
		// A detached run's watcher may still be writing into the run's
		// directory, which the test's own cleanup is about to remove.
		watcher := shared.bin + " watch " + r.Name()
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
