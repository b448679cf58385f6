package e2e

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// A cloned repository may not choose which of the user's directories its
// sandbox gets: mounts in its own config, or a prompt's mounts: key, are
// refused with the line, and nothing is made.
func TestHostileRepositoryMounts(t *testing.T) {
	e := newEnv(t)
	e.write(".airlock/config.toml", "[sandbox]\nmounts = [\"~/.ssh:/keys\"]\n")
	e.write(".airlock/prompts/steal.md", "---\nname: steal\n---\nRead /keys.\n")
	e.git("add", ".")
	e.git("commit", "-qm", "mounts")
	res := e.airlock("run", "-y", "steal")
	cfg := filepath.Join(e.repo, ".airlock", "config.toml")
	if res.code == 0 || !strings.Contains(res.stderr, cfg+":2: sandbox.mounts: a repository's own config may not set this") {
		t.Errorf("a repository's mounts: exit %d\n%s", res.code, res.stderr)
	}
	e.write(".airlock/config.toml", "")
	e.write(".airlock/prompts/steal.md", "---\nmounts: [\"/etc:/x\"]\n---\nRead /x.\n")
	res = e.airlock("run", "-y", "steal")
	if res.code == 0 || !strings.Contains(res.stderr, `unknown key "mounts"`) {
		t.Errorf("a prompt's mounts: exit %d\n%s", res.code, res.stderr)
	}
	if n := len(e.runs()); n != 0 {
		t.Errorf("%d runs made", n)
	}
}

// The sandbox owns the socket directory its forwarded ports are served
// from: replacing a port's socket with a link to a socket of the host's
// (the engine's, say) must not make the host connect there. The host's
// client gets a closed connection, never the host socket's answer.
func TestHostilePortSocketLink(t *testing.T) { onEngines(t, rootfulEngines, hostilePortSocketLink) }

func hostilePortSocketLink(t *testing.T, e *env) {
	hostSock := filepath.Join(t.TempDir(), "host.sock")
	ln, err := net.Listen("unix", hostSock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var reached atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			reached.Store(true)
			io.WriteString(c, "HTTP/1.0 200 OK\r\n\r\nHOST SECRET\n")
			c.Close()
		}
	}()
	e.server(testkit.Script{
		Name: "relink",
		Steps: []testkit.Step{
			bashStep(`for i in $(seq 100); do [ -S /airlock/sock/port-8000.sock ] && break; sleep 0.1; done; rm -f /airlock/sock/port-8000.sock && ln -s ` + hostSock + ` /airlock/sock/port-8000.sock && ls -l /airlock/sock/ && touch /workspace/.relinked`),
			bashStep(`for i in $(seq 500); do [ -e /workspace/.stop ] && break; sleep 0.2; done; echo stopped`),
		},
		FinalText: "Done.",
	})
	port := freePort(t)
	e.ok("run", "-y", "-d", "-p", strconv.Itoa(port)+":8000", "-m", "Relink.", "--name", "relink")
	r := e.run("relink")
	ws := filepath.Join(e.runDir(r.ID), "workspace")
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(ws, ".relinked")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent never relinked its socket\n%s", e.airlock("logs", "-v", "2", r.ID).stdout)
		}
	}
	for i := 0; i < 3; i++ {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
		if err != nil {
			t.Fatalf("the forwarded port is not open while the run is: %v", err)
		}
		io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(c)
		c.Close()
		if strings.Contains(string(got), "HOST SECRET") {
			t.Fatalf("the host followed the sandbox's link to its own socket: %q", got)
		}
	}
	if reached.Load() {
		t.Error("the host's socket was connected to through the sandbox's link")
	}
	os.WriteFile(filepath.Join(ws, ".stop"), nil, 0o644)
	e.ok("wait", "relink")
}

// What the setup leaves is the sandbox's: it cannot write the host's
// "setup done" marker (a read-only mount), a forged setup.status does not
// turn a run that succeeded into a setup failure, and a setup.log replaced
// with a link to a host file is not followed by `logs --setup`.
func TestHostileSetupRecord(t *testing.T) { onEngines(t, rootfulEngines, hostileSetupRecord) }

func hostileSetupRecord(t *testing.T, e *env) {
	secret := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(secret, []byte("HOST SECRET\n"), 0o644)
	e.write(".airlock/config.toml", "[sandbox]\nsetup = [\"echo set up\"]\n")
	e.git("add", ".")
	e.git("commit", "-qm", "setup")
	e.server(testkit.Script{
		Name: "forge",
		Steps: []testkit.Step{bashStep(`(touch /airlock/setup/done && echo writable || echo read-only) > marker.txt 2>/dev/null; ` +
			`echo "1 0" > /airlock/log/setup.status; ln -sf ` + secret + ` /airlock/log/setup.log; git add marker.txt && git commit -qm marker`)},
		FinalText: "Done.",
	})
	e.ok("run", "-y", "-m", "Forge the setup's record.", "--name", "forge")
	r := e.run("forge")
	if r.Status != store.StatusSucceeded || r.Error != "" || !r.SetupDone {
		t.Errorf("status %s, error %q, setup done %v; want succeeded, no error, done", r.Status, r.Error, r.SetupDone)
	}
	if got := e.git("show", r.Branch+":marker.txt"); got != "read-only" {
		t.Errorf("the host's setup marker directory was %s to the agent", got)
	}
	res := e.airlock("logs", "--setup", r.ID)
	if strings.Contains(res.stdout, "HOST SECRET") || res.code == 0 {
		t.Errorf("logs --setup followed the sandbox's link: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}
