package e2e

import (
	"crypto/tls"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// gitServer is git's smart HTTP (git http-backend) behind an HTTPS server
// on the host's bridge address, accepting only basic authentication with
// x-access-token and the token.
type gitServer struct {
	port         int
	caPEM        []byte
	bare         string
	ok, rejected atomic.Int64
}

func startGitServer(t *testing.T, e *env, addr, token string) *gitServer {
	t.Helper()
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	root := t.TempDir()
	gs := &gitServer{bare: filepath.Join(root, "repo.git")}
	if out, err := exec.Command("git", "clone", "-q", "--bare", e.repo, gs.bare).CombinedOutput(); err != nil {
		t.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	if out, err := exec.Command("git", "-C", gs.bare, "config", "http.receivepack", "true").CombinedOutput(); err != nil {
		t.Fatalf("git config: %v\n%s", err, out)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	caPEM, cert := testTLS(t, "git.test")
	gs.caPEM = caPEM
	ln, err := tls.Listen("tcp", addr+":0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	gs.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "x-access-token" || pass != token {
			gs.rejected.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "the token is wrong", http.StatusUnauthorized)
			return
		}
		gs.ok.Add(1)
		backend.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return gs
}

const gitPushScript = `set -u
git clone -q https://git.test:{PORT}/repo.git /tmp/clone > clone.txt 2>&1; echo "clone=$?" >> clone.txt
cd /tmp/clone && echo from-agent > agent.txt && git add agent.txt &&
  git -c user.name=Agent -c user.email=agent@example.invalid commit -qm "from the agent" &&
  git push -q origin HEAD:refs/heads/agent-push > /workspace/push.txt 2>&1; echo "push=$?" >> /workspace/push.txt
cp /tmp/clone/.git/config /workspace/clone-config.txt
cd /workspace
{ env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\0' '\n' < "$f"; echo; done; } > envdump.txt 2>/dev/null
echo finished
`

// airlock run --git-auth: git in the sandbox clones from and pushes to a
// git host over HTTPS with the user's token, which the proxy injects; the
// token is nowhere in the sandbox, its git config or the logs (issue 13,
// part 3).
func TestGitAuthPush(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gw := e.gateway()
	token := "ghs_" + randHex(36)
	gs := startGitServer(t, e, gw, token)
	userConfig(t, e, fmt.Sprintf(`[egress]
extra_hosts = ["git.test:%[1]s"]
allow_cidrs = ["%[1]s/32"]
ca_certificates = ["%[2]s"]
`, gw, filepath.Join(e.repo, "git-ca.pem")))
	e.write("git-ca.pem", string(gs.caPEM))
	e.write("push.sh", strings.ReplaceAll(gitPushScript, "{PORT}", fmt.Sprint(gs.port)))
	e.git("add", ".")
	e.git("commit", "-qm", "push over https")

	// The server itself refuses a request without the token.
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	if resp, err := cl.Get(fmt.Sprintf("https://%s:%d/repo.git/info/refs?service=git-upload-pack", gw, gs.port)); err != nil || resp.StatusCode != 401 {
		t.Fatalf("the git server answered a request without the token: %v %v", resp, err)
	}
	gs.rejected.Store(0)

	t.Run("without a token, one error and nothing made", func(t *testing.T) {
		e.server(runScript("never", "echo never"))
		e.extra = append(e.extra, "PATH=/usr/bin:/bin", "GH_TOKEN=", "GITHUB_TOKEN=") // no token, no gh
		res := e.airlock("run", "-y", "--git-auth=git.test:"+fmt.Sprint(gs.port), "-m", "x")
		if res.code == 0 || !strings.Contains(res.stderr, "flag --git-auth: egress.inject for git.test:") ||
			!strings.Contains(res.stderr, "GH_TOKEN, GITHUB_TOKEN or `gh auth token`") {
			t.Errorf("exit %d, want one error saying where the token comes from:\n%s", res.code, res.stderr)
		}
		if runs := e.runs(); len(runs) != 0 {
			t.Errorf("%d runs made", len(runs))
		}
	})

	e.server(runScript("push", "sh push.sh"))
	e.extra = append(e.extra, "GH_TOKEN="+token)
	res := e.ok("run", "-y", "--git-auth=git.test:"+fmt.Sprint(gs.port), "-m", "Push a branch.", "--name", "push")
	r := e.runs()[0]
	runDir := filepath.Join(e.state, "airlock", "runs", r.ID)
	ws := filepath.Join(runDir, "workspace")
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(ws, name))
		return string(b)
	}

	if !strings.Contains(read("clone.txt"), "clone=0") || !strings.Contains(read("push.txt"), "push=0") {
		t.Fatalf("clone:\n%s\npush:\n%s", read("clone.txt"), read("push.txt"))
	}
	out, err := exec.Command("git", "-C", gs.bare, "show", "agent-push:agent.txt").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "from-agent" {
		t.Errorf("the pushed branch on the server: %v\n%s", err, out)
	}
	if gs.ok.Load() < 4 || gs.rejected.Load() != 0 {
		t.Errorf("the server accepted %d requests and refused %d; want every request with the token", gs.ok.Load(), gs.rejected.Load())
	}

	dump := read("envdump.txt")
	if !strings.Contains(dump, "SSL_CERT_FILE=/tmp/airlock-ca-bundle.pem") {
		t.Fatalf("no environment dump; the hunt proves nothing:\n%s", tail(dump, 10))
	}
	places := map[string]string{"the sandbox's environment": dump, "the clone's git config": read("clone-config.txt"),
		"run output": res.stdout + res.stderr, "logs --raw": e.ok("logs", "--raw").stdout}
	if inspect, err := exec.Command("docker", "inspect", r.Container).CombinedOutput(); err == nil {
		places["docker inspect"] = string(inspect)
	} else {
		t.Fatalf("docker inspect: %v", err)
	}
	for _, sub := range []string{"workspace", "home", "log", "out", "egress"} {
		filepath.WalkDir(filepath.Join(runDir, sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				b, _ := os.ReadFile(p)
				places[p] = string(b)
			}
			return nil
		})
	}
	for where, text := range places {
		if strings.Contains(text, token) || strings.Contains(text, token[4:24]) {
			t.Errorf("the token is in %s", where)
		}
	}
	if !strings.Contains(places["the clone's git config"], "url = https://git.test:") {
		t.Errorf("the clone's git config:\n%s", places["the clone's git config"])
	}
}
