package e2e

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/agent"
)

// BenchmarkGVisorRun times a whole minimal run, one model turn, under
// gVisor: `airlock run --runtime runsc` from start to harvested result,
// against the same agent (the same image, Claude Code, prompt and model
// server) in a bare `docker run --runtime runsc`. runc's figures are taken
// alongside for scale. `make bench` prints them and the ratios.
//
// The bare agent has no network either (Docker's runsc is registered with
// --network=none): it reaches the model server through a Unix socket
// mounted from the host and a forwarder on its loopback, as airlock's agent
// reaches its proxy.
func BenchmarkGVisorRun(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	needRunsc(b)
	e, url, image := quickBench(b)
	sockDir := unixForward(b, strings.TrimPrefix(url, "http://"))

	bare := func(runtime string) func(b *testing.B) {
		return func(b *testing.B) {
			args := []string{"run", "--rm", "--runtime", runtime, "--network", "none", "--user", "1000:1000",
				"-v", sockDir + ":/s", "-e", "ANTHROPIC_API_KEY=sk-ant-bench", "-e", "ANTHROPIC_BASE_URL=http://127.0.0.1:8080"}
			for _, kv := range (agent.Claude{}).Env(agent.Options{}) {
				if strings.HasPrefix(kv, "HOME=") {
					kv = "HOME=/tmp"
				}
				args = append(args, "-e", kv)
			}
			args = append(args, image, "node", "-e", bareForwarder)
			for b.Loop() {
				out, err := exec.Command("docker", args...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "ok") {
					b.Fatalf("docker run --runtime %s: %v\n%s", runtime, err, out)
				}
			}
		}
	}
	whole := func(runtime string) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command(shared.bin, "run", "-y", "--runtime", runtime, "-m", "hi", "--name", "bench-"+runtime)
				cmd.Dir = e.repo
				cmd.Env = e.environ()
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("airlock run --runtime %s: %v\n%s", runtime, err, out)
				}
			}
		}
	}
	b.Run("bare-runc", bare("runc"))
	b.Run("bare-runsc", bare("runsc"))
	b.Run("airlock-runc", whole("runc"))
	b.Run("airlock-runsc", whole("runsc"))
	b.StopTimer()
	removeRuns(e)
}

// bareForwarder is the bare agent's way to the model server: a listener on
// its loopback piped to the host's socket, then Claude Code, one turn.
const bareForwarder = `const net = require("net");
net.createServer(c => {
  const u = net.connect("/s/model.sock");
  c.pipe(u); u.pipe(c);
  c.on("error", () => u.destroy()); u.on("error", () => c.destroy());
}).listen(8080, "127.0.0.1", () => {
  require("child_process").spawn("claude", ["-p", "--dangerously-skip-permissions", "hi"], {stdio: "inherit"})
    .on("exit", code => process.exit(code));
});`

// unixForward serves a Unix socket, in a directory of its own, that
// forwards every connection to the TCP address target; it returns the
// directory.
func unixForward(tb testing.TB, target string) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "airlock-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "model.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	os.Chmod(sock, 0o777)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, u)
			}()
		}
	}()
	return dir
}
