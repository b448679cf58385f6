package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// BenchmarkIncusRun times, on Incus, a whole minimal run (one model turn):
// `airlock run --engine incus` from start to its summary, against the same
// agent (the same image, Claude Code, prompt and model server) in Incus'
// own bare run of the image: an instance made and started through Incus'
// API, whose init is the agent (as the image's user), until it stops. And
// start-up against Docker's: `airlock run -d` on Incus and on Docker (until
// the agent's process runs), and the engines' bare start of the same image
// running `true`. `make bench` prints them and the ratios.
//
// The bare agent has no network either: it reaches the model server through
// a Unix socket mounted from the host (a disk device) and a forwarder on its
// loopback, as airlock's agent reaches its proxy.
func BenchmarkIncusRun(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	inc := testkit.Incus(b) // fails on CI when Incus does not answer
	inc.UseBinary(shared.bin)
	ctx := context.Background()
	gw, err := inc.HostAddress(ctx)
	if err != nil {
		b.Fatal(err)
	}
	api := newIncusAPI(b)

	// The model server, where the Incus proxies (on their bridge) and the
	// Docker proxies (on Docker's) reach it.
	incusSrv := testkit.NewServer(testkit.Script{Name: "quick", FinalText: "ok"})
	incusURL, err := incusSrv.Start(gw + ":0")
	if err != nil {
		b.Fatal(err)
	}
	defer incusSrv.Close()
	dockerSrv := testkit.NewServer(testkit.Script{Name: "quick", FinalText: "ok"})
	dockerURL, err := dockerSrv.Start(shared.gateway + ":0")
	if err != nil {
		b.Fatal(err)
	}
	defer dockerSrv.Close()

	incusEnv := &env{state: b.TempDir(), repo: b.TempDir() + "/repo"}
	initRepoB(b, incusEnv)
	incusEnv.extra = []string{"ANTHROPIC_API_KEY=sk-ant-bench", "ANTHROPIC_BASE_URL=" + incusURL, "AIRLOCK_ENGINE=incus"}
	dockerEnv := &env{state: b.TempDir(), repo: b.TempDir() + "/repo"}
	initRepoB(b, dockerEnv)
	dockerEnv.extra = []string{"ANTHROPIC_API_KEY=sk-ant-bench", "ANTHROPIC_BASE_URL=" + dockerURL}

	imageOf := func(e *env) string {
		build := exec.Command(shared.bin, "image", "build")
		build.Env = e.environ()
		var stderr bytes.Buffer
		build.Stderr = &stderr
		out, err := build.Output()
		if err != nil {
			b.Fatalf("airlock image build: %v\n%s", err, tail(stderr.String(), 30))
		}
		return strings.TrimSpace(string(out))
	}
	incusImage, dockerImage := imageOf(incusEnv), imageOf(dockerEnv)

	sockDir := unixForward(b, strings.TrimPrefix(incusURL, "http://"))
	// Incus keeps no output of an init that has ended, and an init's
	// stdout and stderr are the instance's console, a terminal (on which
	// Claude Code waits for a terminal's answers): the agent's output goes
	// to a file in the mounted directory, as Docker's goes to a pipe.
	outDir := filepath.Join(sockDir, "out")
	os.Mkdir(outDir, 0o777)
	os.Chmod(outDir, 0o777)
	forwarder := strings.Replace(bareForwarder, `{stdio: "inherit"}`,
		`{stdio: ["ignore", out, out]}`, 1)
	forwarder = `const out = require("fs").openSync("/s/out/agent.log", "w");` + "\n" + forwarder
	if forwarder == bareForwarder {
		b.Fatal("bareForwarder changed: redirect its output here")
	}
	if err := os.WriteFile(filepath.Join(sockDir, "forward.js"), []byte(forwarder), 0o644); err != nil {
		b.Fatal(err)
	}
	// The bare agent's environment and directory: the image's own (Incus
	// does not apply airlock's image properties, as Docker applies an
	// image's config) and the agent's, as airlock gives it.
	agentEnv := map[string]string{"ANTHROPIC_API_KEY": "sk-ant-bench", "ANTHROPIC_BASE_URL": "http://127.0.0.1:8080"}
	imageEnv, workdir := api.imageConfig(b, incusImage)
	for _, kv := range append(imageEnv, (agent.Claude{}).Env(agent.Options{})...) {
		k, v, _ := strings.Cut(kv, "=")
		agentEnv[k] = v
	}
	agentEnv["HOME"] = "/tmp"

	b.Run("bare", func(b *testing.B) {
		for b.Loop() {
			api.run(b, incusImage, "/usr/bin/node /s/forward.js", 1000, workdir, agentEnv, sockDir)
			if out, _ := os.ReadFile(filepath.Join(outDir, "agent.log")); !strings.Contains(string(out), "ok") {
				b.Fatalf("bare Incus agent said:\n%s", out)
			}
		}
	})
	whole := func(bin string) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command(bin, "run", "-y", "-m", "hi", "--name", "bench")
				cmd.Dir, cmd.Env = incusEnv.repo, incusEnv.environ()
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("airlock run on Incus: %v\n%s", err, out)
				}
			}
		}
	}
	b.Run("airlock", whole(shared.bin))
	// AIRLOCK_BENCH_BEFORE names another airlock binary (an earlier
	// build) to time alongside, in the same run, for a change's before
	// and after.
	if before := os.Getenv("AIRLOCK_BENCH_BEFORE"); before != "" {
		b.Run("airlock-before", whole(before))
	}

	// Start-up: the engine's bare start of `true`, and `airlock run -d`.
	b.Run("start-bare-docker", func(b *testing.B) {
		for b.Loop() {
			if out, err := exec.Command("docker", "run", "--rm", dockerImage, "true").CombinedOutput(); err != nil {
				b.Fatalf("docker run: %v\n%s", err, out)
			}
		}
	})
	b.Run("start-bare-incus", func(b *testing.B) {
		for b.Loop() {
			api.run(b, incusImage, "/bin/true", 0, "/", nil, "")
		}
	})
	start := func(e *env) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command(shared.bin, "run", "-d", "-m", "hi", "--name", "bench")
				cmd.Dir, cmd.Env = e.repo, e.environ()
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("airlock run -d: %v\n%s", err, out)
				}
			}
		}
	}
	b.Run("start-airlock-docker", start(dockerEnv))
	b.Run("start-airlock-incus", start(incusEnv))
	b.StopTimer()
	for _, e := range []*env{incusEnv, dockerEnv} {
		runs, _ := os.ReadDir(filepath.Join(e.state, "airlock", "runs"))
		for _, r := range runs {
			rm := exec.Command(shared.bin, "rm", "-y", "--force", r.Name())
			rm.Dir, rm.Env = e.repo, e.environ()
			rm.Run()
		}
	}
}

// incusAPI is a bare client of Incus' REST API, for the bench's own runs.
type incusAPI struct{ hc *http.Client }

func newIncusAPI(tb testing.TB) *incusAPI {
	sock := "/var/lib/incus/unix.socket"
	if s := os.Getenv("INCUS_SOCKET"); s != "" {
		sock = s
	}
	return &incusAPI{hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

// call sends a request and returns the answer's metadata, having waited
// for a background operation.
func (a *incusAPI) call(tb testing.TB, method, path string, body any) json.RawMessage {
	tb.Helper()
	md, err := a.try(method, path, body)
	if err != nil {
		tb.Fatal(err)
	}
	return md
}

func (a *incusAPI) try(method, path string, body any) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, "http://incus"+path, rd)
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("incus %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	var r struct {
		Type      string          `json:"type"`
		Error     string          `json:"error"`
		Operation string          `json:"operation"`
		Metadata  json.RawMessage `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("incus %s %s: %w", method, path, err)
	}
	if r.Type == "error" {
		return nil, fmt.Errorf("incus %s %s: %s", method, path, r.Error)
	}
	if r.Type == "async" {
		md, err := a.try(http.MethodGet, r.Operation+"/wait?timeout=-1", nil)
		if err != nil {
			return nil, fmt.Errorf("incus %s %s: %w", method, path, err)
		}
		var op struct {
			Status string `json:"status"`
			Err    string `json:"err"`
		}
		json.Unmarshal(md, &op)
		if op.Status != "Success" {
			return nil, fmt.Errorf("incus %s %s: %s %s", method, path, op.Status, op.Err)
		}
	}
	return r.Metadata, nil
}

// imageConfig is the environment and working directory airlock's build
// recorded for the image.
func (a *incusAPI) imageConfig(tb testing.TB, alias string) (env []string, workdir string) {
	var al struct{ Target string }
	json.Unmarshal(a.call(tb, http.MethodGet, "/1.0/images/aliases/"+url.PathEscape(alias), nil), &al)
	var img struct{ Properties map[string]string }
	json.Unmarshal(a.call(tb, http.MethodGet, "/1.0/images/"+al.Target, nil), &img)
	json.Unmarshal([]byte(img.Properties["airlock.env"]), &env)
	return env, img.Properties["airlock.workdir"]
}

// run is Incus' own run of image: an instance whose init is cmd (split on
// spaces, LXC's rule) as uid in cwd, with env and, when sockDir is set, that
// directory at /s; made, started, waited for until it stops, and deleted.
func (a *incusAPI) run(tb testing.TB, image, cmd string, uid int, cwd string, env map[string]string, sockDir string) {
	tb.Helper()
	name := fmt.Sprintf("airlock-bench-bare-%d", time.Now().UnixNano()%1e9)
	config := map[string]string{
		"raw.lxc": fmt.Sprintf("lxc.init.cmd = %s\nlxc.init.uid = %d\nlxc.init.gid = %d\nlxc.init.cwd = %s\n", cmd, uid, uid, cwd),
	}
	for k, v := range env {
		config["environment."+k] = v
	}
	// A NIC on the bridge, as `incus launch` gives with the default profile:
	// without a network LXC leaves even loopback down (airlock's init brings
	// it up), and the agent reaches its forwarder over loopback. The NIC
	// gets no address (the image has no DHCP client); the agent has no way
	// out but the socket, as in airlock's sandbox.
	devices := map[string]any{
		"root": map[string]string{"type": "disk", "path": "/", "pool": sandbox.IncusDefaultPool},
		"eth0": map[string]string{"type": "nic", "network": sandbox.IncusDefaultNetwork, "name": "eth0"},
	}
	if sockDir != "" {
		devices["s"] = map[string]string{"type": "disk", "source": sockDir, "path": "/s", "shift": "true"}
	}
	p := "/1.0/instances/" + name
	a.call(tb, http.MethodPost, "/1.0/instances", map[string]any{
		"name": name, "type": "container", "profiles": []string{},
		"source": map[string]string{"type": "image", "alias": image}, "config": config, "devices": devices,
	})
	// Incus reports the instance stopped when its init has ended, a moment
	// before it lets it be deleted.
	defer func() {
		for try := 0; ; try++ {
			_, err := a.try(http.MethodDelete, p, nil)
			if err == nil {
				return
			}
			if try == 50 {
				tb.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	a.call(tb, http.MethodPut, p+"/state", map[string]any{"action": "start"})
	for delay := 10 * time.Millisecond; ; delay = min(delay*2, 100*time.Millisecond) {
		// The instance, not its /state: that asks for the init's PID,
		// which fails while an ended init is being reaped.
		var st struct{ Status string }
		json.Unmarshal(a.call(tb, http.MethodGet, p, nil), &st)
		if st.Status == "Stopped" {
			break
		}
		time.Sleep(delay)
	}
}
