package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/run"
)

// sshKey is a key pair made for one test.
type sshKey struct {
	private     string // OpenSSH PEM
	public      string // authorized_keys line
	fingerprint string
	privPath    string
	pubPath     string
}

func newSSHKey(t *testing.T, dir, name string) sshKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	k := sshKey{
		private:     string(pem.EncodeToMemory(block)),
		public:      strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + name,
		fingerprint: ssh.FingerprintSHA256(sp),
		privPath:    filepath.Join(dir, name),
		pubPath:     filepath.Join(dir, name+".pub"),
	}
	if err := os.WriteFile(k.privPath, []byte(k.private), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.pubPath, []byte(k.public+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// needle is a piece of the private key's body that any copy of it would
// contain.
func (k sshKey) needle() string {
	lines := strings.Split(strings.TrimSpace(k.private), "\n")
	return lines[len(lines)/2]
}

// sshdImage is the agent image with Debian's openssh-server added, built
// once per agent image.
func sshdImage(t *testing.T, w *world) string {
	t.Helper()
	ref := "airlock-e2e-sshd:" + strings.NewReplacer(":", "-", "/", "-").Replace(w.image)
	if w.command("image", "inspect", ref).Run() == nil {
		return ref
	}
	dockerfile := "FROM " + w.image + "\nUSER root\n" +
		"RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server && rm -rf /var/lib/apt/lists/*\n"
	cmd := w.command("build", "-q", "-t", ref, "-")
	cmd.Stdin = strings.NewReader(dockerfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", ref, err, out)
	}
	return ref
}

// sshdScript starts a git server over SSH: user git, the test's key
// authorised, a bare repository with one commit.
const sshdScript = `set -e
mkdir -p /run/sshd
rm -f /etc/ssh/ssh_host_*
install -m 600 /srv/ssh/host_key /etc/ssh/ssh_host_ed25519_key
useradd -m -s /bin/bash git
usermod -p '*' git
install -d -m 700 -o git -g git /home/git/.ssh
install -m 600 -o git -g git /srv/ssh/authorized_keys /home/git/.ssh/authorized_keys
su git -c 'git init -q --bare /home/git/repo.git && git init -q -b main /tmp/seed && cd /tmp/seed && echo seed > README && git add README && git -c user.email=t@t -c user.name=t commit -qm seed && git push -q /home/git/repo.git main && git --git-dir=/home/git/repo.git symbolic-ref HEAD refs/heads/main'
exec /usr/sbin/sshd -D -e -h /etc/ssh/ssh_host_ed25519_key -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o UsePAM=no
`

// startSSHD runs the git server on the world's network as git.test and
// returns its container name, address and host key line for known_hosts.
func startSSHD(t *testing.T, w *world, authorized ...sshKey) (name, ip, knownHosts string) {
	t.Helper()
	image := sshdImage(t, w)
	dir := filepath.Join(w.dir, "ssh")
	os.MkdirAll(dir, 0o755)
	host := newSSHKey(t, t.TempDir(), "host_key")
	var auth strings.Builder
	for _, k := range authorized {
		auth.WriteString(k.public + "\n")
	}
	for name, content := range map[string]string{"host_key": host.private, "authorized_keys": auth.String(), "start.sh": sshdScript} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	name = w.prefix + "-sshd"
	w.docker("run", "-d", "--name", name, "--label", "airlock-e2e=1", "--network", w.network,
		"--network-alias", "git.test", "--user", "0", "-v", w.dir+":/srv:ro", image, "sh", "/srv/ssh/start.sh")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(w.logs(name), "Server listening") {
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not start:\n%s", w.logs(name))
		}
		time.Sleep(100 * time.Millisecond)
	}
	ip = w.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", w.network), name)
	if net.ParseIP(ip) == nil {
		t.Fatalf("sshd has no address: %q", ip)
	}
	hostPub := strings.Fields(host.public)
	return name, ip, "git.test " + hostPub[0] + " " + hostPub[1] + "\n"
}

// startSSHAgent runs the user's ssh-agent on the host with keys in it, as
// the uid runs are made as (a test as root runs sandboxes as uid 1000,
// and ssh-agent answers only its own uid).
func startSSHAgent(t *testing.T, e *env, keys ...sshKey) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "airlock-e2e-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	uid, gid := run.User(os.Getuid(), os.Getgid())
	if e.user != nil {
		uid, gid = e.uid(), e.gid()
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if uid != os.Getuid() {
		cmd = exec.Command("setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--clear-groups", "ssh-agent", "-D", "-a", sock)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ssh-agent (openssh-client must be installed on the host): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not make its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, k := range keys {
		add := exec.Command("ssh-add", k.privPath)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v\n%s", err, out)
		}
	}
	return sock
}

// sshAttempts runs in the sandbox: git over SSH through the proxy with the
// forwarded agent, and what a hostile agent would try with that agent.
// Each line of ssh-results.txt is "name: result".
const sshAttempts = `out=$PWD/ssh-results.txt
: > $out
say() { printf '%s: %s\n' "$1" "$2" >> $out; }
say list "$(ssh-add -l 2>&1 | tr '\n' ' ')"
git clone -q git@git.test:repo.git clone > clone.log 2>&1; say clone $?
(cd clone && git -c user.email=a@b -c user.name=agent commit -q --allow-empty -m 'from the sandbox' && git push -q origin HEAD:refs/heads/from-sandbox) > push.log 2>&1; say push $?
echo data > data.txt
ssh-keygen -Y sign -f allowed.pub -n test data.txt > sign-allowed.log 2>&1; say sign-allowed $?
python3 - other.pub > sign-other.log 2>&1 <<'PY'
# A sign request for a key the agent does not list, straight on the
# agent protocol (ssh-keygen would not even ask).
import base64, os, socket, struct, sys
blob = base64.b64decode(open(sys.argv[1]).read().split()[1])
s = lambda b: struct.pack('>I', len(b)) + b
msg = bytes([13]) + s(blob) + s(b'data') + struct.pack('>I', 0)
c = socket.socket(socket.AF_UNIX); c.connect(os.environ['SSH_AUTH_SOCK'])
c.sendall(struct.pack('>I', len(msg)) + msg)
n = struct.unpack('>I', c.recv(4))[0]; reply = c.recv(n)
print('reply type', reply[0]); sys.exit(0 if reply[0] == 14 else 1)
PY
say sign-other $?
ssh-keygen -q -t ed25519 -N '' -f /tmp/newkey; ssh-add /tmp/newkey > add.log 2>&1; say add $?
ssh-add -d allowed.pub > remove.log 2>&1; say remove $?
ssh-add -D > remove-all.log 2>&1; say remove-all $?
say list-after "$(ssh-add -l 2>&1 | tr '\n' ' ')"
say known "$(grep -c git.test /etc/ssh/ssh_known_hosts) $(grep -c unrelated /etc/ssh/ssh_known_hosts)"
ssh -o BatchMode=yes git@other.test true > other.log 2>&1; say other $?
printf 'GET / HTTP/1.0\r\n\r\n' | /airlock/bin/airlock connect git.test 22 > notssh.log 2>&1; say notssh "$(wc -c < notssh.log)"
{ env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\0' '\n' < "$f"; done
  find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -size -64k -print0 2>/dev/null |
    xargs -0 grep -lE 'PRIVATE KEY-----' 2>/dev/null | while read -r f; do echo "== $f"; cat "$f"; done
} > hunt.txt 2>/dev/null
say done 0
`

// SSH from a real sandbox (issue 13): git clone and push over SSH to a
// git server in a test container go through the proxy's tunnel, signed by
// the user's ssh-agent through the proxy's filter (or by a key file the
// proxy loads), and no private key is anywhere in the sandbox. The hostile
// agent's tries at the forwarded agent (other keys, adding, removing) and
// at SSH elsewhere fail.
func TestHostileSSH(t *testing.T) {
	onEngines(t, worldEngines, func(t *testing.T, e *env) {
		w := newWorldOn(t, e.engine, e.user)
		keyDir := e.tempDir()
		allowed := newSSHKey(t, keyDir, "allowed")
		other := newSSHKey(t, keyDir, "other")
		sshd, ip, known := startSSHD(t, w, allowed, other)
		knownPath := filepath.Join(keyDir, "known_hosts")
		if err := os.WriteFile(knownPath, []byte("# the test's\nunrelated.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"+known), 0o644); err != nil {
			t.Fatal(err)
		}
		e.chown(keyDir) // the keys are the user's
		egressCfg := fmt.Sprintf("[egress]\nnetwork = %q\nallow = [\"git.test:22\"]\nallow_cidrs = [\"%s/32\"]\n[egress.ssh]\nknown_hosts = [%q]\n", w.network, ip, knownPath)
		// Keys are the user's to give: a repository's config may not.
		sshSection := func(rest string) string {
			if strings.Contains(testConfig, "[egress.ssh]") {
				t.Fatal("the test configuration has an [egress.ssh] already")
			}
			return "[egress.ssh]\n" + rest
		}
		e.write("sshtry.sh", sshAttempts)
		e.write(".gitignore", "clone/\nhunt.txt\n*.log\n")
		e.write("allowed.pub", allowed.public+"\n")
		e.write("other.pub", other.public+"\n")

		e.write(".airlock/config.toml", egressCfg)
		e.git("add", ".")
		e.git("commit", "-qm", "ssh attempts")
		cases := []struct {
			name   string
			config string
			agent  bool
		}{
			{"the user's agent, filtered", fmt.Sprintf("keys = [%q]\nhosts = [\"git.test\"]\n", allowed.pubPath), true},
			{"a key file, no agent", fmt.Sprintf("key_file = %q\nhosts = [\"git.test\"]\n", allowed.privPath), false},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				e.server(runScript("ssh", "sh sshtry.sh; echo finished"))
				userAgent := ""
				if c.agent {
					userAgent = startSSHAgent(t, e, allowed, other)
				}
				e.extra = append(e.extra, "SSH_AUTH_SOCK="+userAgent)
				userConfig(t, e, sshSection(c.config))
				branch := fmt.Sprintf("from-sandbox-%d", i)
				e.write("sshtry.sh", strings.ReplaceAll(sshAttempts, "from-sandbox", branch))
				e.git("commit", "-qam", "branch "+branch)
				started := e.ok("run", "-y", "-m", "Use git over ssh.", "--name", fmt.Sprintf("ssh%d", i))
				if shown := started.stdout + started.stderr; !strings.Contains(shown, allowed.fingerprint+" ") || !strings.Contains(shown, "may sign, from") {
					t.Errorf("the policy shown before the run does not name the key the sandbox may sign with:\n%s", shown)
				}
				runs := e.runs()
				r := runs[0]
				for _, rr := range runs {
					if rr.Name == fmt.Sprintf("ssh%d", i) {
						r = rr
					}
				}
				ws := filepath.Join(e.state, "airlock", "runs", r.ID, "workspace")
				res := sshResults(t, ws)
				logs := func(names ...string) string {
					var b strings.Builder
					for _, n := range names {
						data, _ := os.ReadFile(filepath.Join(ws, n))
						fmt.Fprintf(&b, "--- %s\n%s", n, data)
					}
					return b.String()
				}
				if res["done"] != "0" {
					t.Fatalf("the attempts did not finish: %v\n%s\negress log:\n%s", res, logs("clone.log", "push.log"), recordsJSON(auditRecords(t, e.state, r.ID)))
				}
				t.Run("git clone and push over ssh", func(t *testing.T) {
					if res["clone"] != "0" || res["push"] != "0" {
						t.Fatalf("clone %s, push %s\n%s\nsshd:\n%s", res["clone"], res["push"], logs("clone.log", "push.log"), tail(w.logs(sshd), 20))
					}
					got := w.docker("exec", sshd, "git", "--git-dir", "/home/git/repo.git", "log", "-1", "--format=%s", branch)
					if got != "from the sandbox" {
						t.Errorf("the server's %s is %q", branch, got)
					}
				})
				t.Run("the agent lists only the allowed key", func(t *testing.T) {
					for _, k := range []string{"list", "list-after"} {
						if !strings.Contains(res[k], allowed.fingerprint) || strings.Contains(res[k], other.fingerprint) {
							t.Errorf("%s: %q, want %s only", k, res[k], allowed.fingerprint)
						}
					}
				})
				t.Run("signing: the allowed key only", func(t *testing.T) {
					if res["sign-allowed"] != "0" {
						t.Errorf("signing with the allowed key: exit %s\n%s", res["sign-allowed"], logs("sign-allowed.log"))
					}
					if res["sign-other"] == "0" {
						t.Errorf("signing with a key not allowed succeeded")
					}
				})
				t.Run("adding and removing keys is refused", func(t *testing.T) {
					for _, k := range []string{"add", "remove", "remove-all"} {
						if res[k] == "0" {
							t.Errorf("ssh-add %s succeeded\n%s", k, logs(k+".log"))
						}
					}
					if c.agent {
						have, err := exec.Command("sh", "-c", "SSH_AUTH_SOCK="+userAgent+" ssh-add -l").CombinedOutput()
						if err != nil || !strings.Contains(string(have), allowed.fingerprint) || !strings.Contains(string(have), other.fingerprint) {
							t.Errorf("the user's agent lost keys: %v\n%s", err, have)
						}
					}
				})
				t.Run("known_hosts has the allowed host's key only", func(t *testing.T) {
					if res["known"] != "1 0" {
						t.Errorf("the sandbox's ssh_known_hosts has %q lines naming git.test and an unrelated host, want \"1 0\"", res["known"])
					}
				})
				t.Run("ssh elsewhere fails at the proxy", func(t *testing.T) {
					if res["other"] == "0" {
						t.Errorf("ssh to other.test succeeded")
					}
					if out := logs("other.log"); !strings.Contains(out, "connect other.test:22: airlock egress proxy: denied: other.test:22 is not in the allowlist") {
						t.Errorf("ssh to other.test does not say the proxy refused it:\n%s", out)
					}
					if res["notssh"] != "0" {
						t.Errorf("a tunnel to git.test:22 carried %s bytes of non-SSH back", res["notssh"])
					}
				})
				t.Run("no private key in the sandbox", func(t *testing.T) {
					hunt, err := os.ReadFile(filepath.Join(ws, "hunt.txt"))
					if err != nil {
						t.Fatal(err)
					}
					if !strings.Contains(string(hunt), "== /tmp/newkey") || !strings.Contains(string(hunt), "SSH_AUTH_SOCK=") {
						t.Fatalf("the hunt did not even find the sandbox's own key and agent; it proves nothing:\n%s", tail(string(hunt), 20))
					}
					for _, k := range []sshKey{allowed, other} {
						if strings.Contains(string(hunt), k.needle()) {
							t.Errorf("the private key %s is visible in the sandbox", k.privPath)
						}
					}
					runDir := filepath.Join(e.state, "airlock", "runs", r.ID)
					for _, f := range []string{"log/agent.jsonl", "log/agent.stderr", "egress/egress.jsonl"} {
						data, _ := os.ReadFile(filepath.Join(runDir, f))
						if strings.Contains(string(data), allowed.needle()) {
							t.Errorf("the private key is in the run's %s", f)
						}
					}
					inspect := w.docker("inspect", r.Container)
					if strings.Contains(inspect, allowed.needle()) {
						t.Error("the private key is in the agent container's inspect")
					}
					if _, err := os.Stat(filepath.Join(e.state, "airlock", "runs", r.ID, "egress", "secrets.json")); !os.IsNotExist(err) {
						t.Errorf("the proxy's secrets file outlived its start: %v", err)
					}
				})
				t.Run("the audit log", func(t *testing.T) {
					recs := auditRecords(t, e.state, r.ID)
					want := []struct {
						what  string
						match func(egress.Record) bool
					}{
						{"an SSH tunnel to git.test", func(r egress.Record) bool {
							return r.Kind == "connect" && r.Host == "git.test" && r.Port == 22 && r.Allowed && strings.Contains(r.Reason, "ssh SSH-2.0-OpenSSH")
						}},
						{"a signature with the allowed key", func(r egress.Record) bool {
							return r.Kind == "ssh-agent" && r.Method == "sign" && r.Allowed && r.Rule == allowed.fingerprint
						}},
						{"the other key refused", func(r egress.Record) bool {
							return r.Kind == "ssh-agent" && r.Method == "sign" && !r.Allowed && r.Rule == other.fingerprint
						}},
						{"add refused", func(r egress.Record) bool { return r.Kind == "ssh-agent" && r.Method == "add" && !r.Allowed }},
						{"remove refused", func(r egress.Record) bool { return r.Kind == "ssh-agent" && r.Method == "remove" && !r.Allowed }},
						{"remove-all refused", func(r egress.Record) bool {
							return r.Kind == "ssh-agent" && r.Method == "remove-all" && !r.Allowed
						}},
						{"other.test:22 denied", func(r egress.Record) bool {
							return r.Kind == "connect" && r.Host == "other.test" && !r.Allowed && strings.Contains(r.Reason, "not in the allowlist")
						}},
						{"non-SSH to git.test:22 refused", func(r egress.Record) bool {
							return r.Kind == "connect" && r.Host == "git.test" && !r.Allowed && strings.Contains(r.Reason, "not SSH")
						}},
					}
					for _, wnt := range want {
						found := false
						for _, rec := range recs {
							found = found || wnt.match(rec)
						}
						if !found {
							t.Errorf("no record of %s:\n%s", wnt.what, recordsJSON(recs))
						}
					}
				})
			})
		}
	})
}

// sshResults reads the sandbox's "name: result" lines.
func sshResults(t *testing.T, ws string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ws, "ssh-results.txt"))
	if err != nil {
		t.Fatalf("no results from the sandbox: %v", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		out[k] = strings.TrimSpace(v)
	}
	return out
}

// Every mistake in [egress.ssh] is one error saying what and where, before
// anything is created.
func TestSSHConfigErrors(t *testing.T) {
	e := newEnv(t)
	dir := e.tempDir()
	key := newSSHKey(t, dir, "id")
	stray := newSSHKey(t, dir, "stray")
	_, encPriv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(encPriv, "enc", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	encPath := filepath.Join(dir, "enc")
	if err := os.WriteFile(encPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte("git.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agentSock := startSSHAgent(t, e, key)
	allow := "[egress]\nallow = [\"git.test:22\"]\n[egress.ssh]\nknown_hosts = [" + fmt.Sprintf("%q", known) + "]\n"
	// The lines of the user config below the shared test configuration.
	line := func(n int) string {
		return fmt.Sprintf("airlock/config.toml:%d: ", userConfigOffset+n)
	}
	cases := []struct {
		name, config, sock string
		want               []string
	}{
		{"a missing public key file", allow + fmt.Sprintf("keys = [%q]\n", filepath.Join(dir, "nope.pub")), agentSock,
			[]string{line(5) + "egress.ssh.keys", "nope.pub: no such file"}},
		{"a bad fingerprint", allow + "keys = [\"SHA256:nope\"]\n", agentSock,
			[]string{line(5) + "egress.ssh.keys", "is not a SHA256 key fingerprint"}},
		{"a private key listed as a public one", allow + fmt.Sprintf("keys = [%q]\n", key.privPath), agentSock,
			[]string{line(5) + "egress.ssh.keys", "is a private key"}},
		{"an encrypted key file", allow + fmt.Sprintf("key_file = %q\n", encPath), "",
			[]string{line(5) + "egress.ssh.key_file", "encrypted with a passphrase"}},
		{"keys with no host allowed on port 22", fmt.Sprintf("[egress.ssh]\nkeys = [%q]\n", key.pubPath), agentSock,
			[]string{"egress.ssh.keys (", "airlock/config.toml:", "no host is allowed for SSH"}},
		{"a host without a known_hosts entry", "[egress]\nallow = [\"other.test:22\"]\n[egress.ssh]\n" + fmt.Sprintf("known_hosts = [%q]\nkeys = [%q]\n", known, key.pubPath), agentSock,
			[]string{"other.test is allowed for SSH (port 22), but no known_hosts entry names it"}},
		{"no agent", allow + fmt.Sprintf("keys = [%q]\n", key.pubPath), "",
			[]string{"egress.ssh.keys (", "SSH_AUTH_SOCK is not set"}},
		{"keys in the repository's own config", "", agentSock, []string{".airlock/config.toml:", "egress.ssh.keys: a repository's own config may not set this"}},
		{"a key not in the agent", allow + fmt.Sprintf("keys = [%q]\n", stray.pubPath), agentSock,
			[]string{"stray.pub (" + stray.fingerprint + ") is not in your ssh-agent"}},
		// The allowlist may be the repository's: the sandbox signs in
		// with the user's keys only on hosts the user named.
		{"a host allowed on port 22 the user did not name", allow + fmt.Sprintf("keys = [%q]\n", key.pubPath), agentSock,
			[]string{"git.test is allowed on port 22 (egress.allow, ", "but not in [egress.ssh] hosts"}},
		{"ssh hosts in the repository's own config", "repo-hosts", agentSock, []string{".airlock/config.toml:", "egress.ssh.hosts: a repository's own config may not set this"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.extra = []string{"SSH_AUTH_SOCK=" + c.sock, "ANTHROPIC_API_KEY=sk-ant-e2e-unused"}
			switch c.config {
			case "":
				userConfig(t, e, "")
				e.write(".airlock/config.toml", allow+fmt.Sprintf("keys = [%q]\n", key.pubPath))
				defer os.Remove(filepath.Join(e.repo, ".airlock", "config.toml"))
			case "repo-hosts":
				userConfig(t, e, fmt.Sprintf("[egress.ssh]\nkeys = [%q]\n", key.pubPath))
				e.write(".airlock/config.toml", allow+"hosts = [\"git.test\"]\n")
				defer os.Remove(filepath.Join(e.repo, ".airlock", "config.toml"))
			default:
				userConfig(t, e, c.config)
			}
			res := e.airlock("run", "-y", "-m", "Use ssh.")
			if res.code == 0 {
				t.Fatal("the run started")
			}
			for _, w := range c.want {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, res.stderr)
				}
			}
			if n := strings.Count(strings.TrimSpace(res.stderr), "\n"); n > 1 {
				t.Errorf("more than one error:\n%s", res.stderr)
			}
			if runs := e.runs(); len(runs) != 0 {
				t.Errorf("%d runs were created", len(runs))
			}
		})
	}
}

// On Incus (no test world there: the proxy's address space is the
// bridge's) the key_file agent and the ssh configuration reach the
// sandbox: it lists the key, signs with it, and ssh goes to the proxy.
func TestSSHKeyFileIncus(t *testing.T) {
	onEngines(t, []engineKind{onIncus}, func(t *testing.T, e *env) {
		dir := e.tempDir()
		key := newSSHKey(t, dir, "id")
		known := filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(known, []byte("git.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.write(".airlock/config.toml", fmt.Sprintf("[egress]\nallow = [\"git.test:22\"]\n[egress.ssh]\nknown_hosts = [%q]\n", known))
		e.write("id.pub", key.public+"\n")
		e.git("add", ".")
		e.git("commit", "-qm", "ssh")
		e.server(runScript("ssh", `{ ssh-add -l; echo data > d; ssh-keygen -Y sign -f id.pub -n test d && echo signed; grep -c git.test /etc/ssh/ssh_known_hosts; ssh -o BatchMode=yes git@other.test true; echo "other $?"; } > out.txt 2>&1; echo finished`))
		e.extra = append(e.extra, "SSH_AUTH_SOCK=")
		userConfig(t, e, fmt.Sprintf("[egress.ssh]\nkey_file = %q\nhosts = [\"git.test\"]\n", key.privPath))
		e.ok("run", "-y", "-m", "Use ssh.")
		r := e.runs()[0]
		out, err := os.ReadFile(filepath.Join(e.state, "airlock", "runs", r.ID, "workspace", "out.txt"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{key.fingerprint, "signed", "\n1\n", "denied: other.test:22 is not in the allowlist", "other 255"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("the sandbox's output lacks %q:\n%s", want, out)
			}
		}
	})
}
