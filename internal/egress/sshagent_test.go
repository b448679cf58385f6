package egress

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func newEd25519(t *testing.T) (ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, sp
}

// realAgent starts OpenSSH's ssh-agent with keys in it, as a user's.
func realAgent(t *testing.T, keys ...ed25519.PrivateKey) string {
	t.Helper()
	if _, err := exec.LookPath("ssh-agent"); err != nil {
		t.Skip("ssh-agent (openssh-client) is not installed")
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var c net.Conn
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err = net.Dial("unix", sock); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ac := agent.NewClient(c)
	for _, k := range keys {
		if err := ac.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	return sock
}

// serveFilter serves the filter on a socket and returns a client of it and
// the audit log.
func serveFilter(t *testing.T, cfg SSHAgentConfig, keys []string) (agent.ExtendedAgent, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	a, err := NewSSHAgent(cfg, keys, NewAuditLog(log))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "filter.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return agent.NewClient(c), log
}

func TestSSHAgentFilter(t *testing.T) {
	allowedPriv, allowed := newEd25519(t)
	otherPriv, other := newEd25519(t)
	block, err := ssh.MarshalPrivateKey(allowedPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	backends := []struct {
		name string
		cfg  func() (SSHAgentConfig, []string)
	}{
		{"the user's ssh-agent", func() (SSHAgentConfig, []string) {
			return SSHAgentConfig{Upstream: realAgent(t, allowedPriv, otherPriv), Keys: []string{ssh.FingerprintSHA256(allowed)}}, nil
		}},
		{"a key file", func() (SSHAgentConfig, []string) {
			return SSHAgentConfig{Keys: []string{ssh.FingerprintSHA256(allowed)}}, []string{string(pem.EncodeToMemory(block))}
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			cfg, keys := b.cfg()
			c, log := serveFilter(t, cfg, keys)
			list, err := c.List()
			if err != nil || len(list) != 1 || ssh.FingerprintSHA256(list[0]) != ssh.FingerprintSHA256(allowed) {
				t.Fatalf("List = %v, %v; want the allowed key alone", list, err)
			}
			sig, err := c.Sign(allowed, []byte("session data"))
			if err != nil {
				t.Fatalf("signing with the allowed key: %v", err)
			}
			if err := allowed.Verify([]byte("session data"), sig); err != nil {
				t.Errorf("the signature does not verify: %v", err)
			}
			if _, err := c.Sign(other, []byte("data")); err == nil {
				t.Error("signing with a key not allowed succeeded")
			}
			refused := map[string]func() error{
				"add":        func() error { return c.Add(agent.AddedKey{PrivateKey: otherPriv}) },
				"remove":     func() error { return c.Remove(allowed) },
				"remove-all": c.RemoveAll,
				"lock":       func() error { return c.Lock([]byte("pw")) },
				"unlock":     func() error { return c.Unlock([]byte("pw")) },
			}
			for name, f := range refused {
				if err := f(); err == nil {
					t.Errorf("%s succeeded", name)
				}
			}
			if _, err := c.Extension("session-bind@openssh.com", nil); err == nil {
				t.Error("an extension was passed on")
			}
			// Nothing changed behind the filter.
			if list, err := c.List(); err != nil || len(list) != 1 {
				t.Errorf("after the refusals List = %v, %v", list, err)
			}
			if _, err := c.Sign(allowed, []byte("again")); err != nil {
				t.Errorf("signing after the refusals: %v", err)
			}

			recs, err := ReadRecords(strings.NewReader(log.String()))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for _, r := range recs {
				if r.Kind != KindSSHAgent {
					t.Errorf("record kind %q", r.Kind)
				}
				key := r.Method
				if r.Allowed {
					key += " allowed"
				}
				got[key]++
				if strings.Contains(r.Reason, "session data") {
					t.Errorf("the audit log holds signed data: %+v", r)
				}
			}
			want := map[string]int{"sign allowed": 2, "sign": 1, "add": 1, "remove": 1, "remove-all": 1, "lock": 1, "unlock": 1}
			for k, n := range want {
				if got[k] != n {
					t.Errorf("%d %q records, want %d; log:\n%s", got[k], k, n, log.String())
				}
			}
		})
	}
}

func TestNewSSHAgentRefusesBadConfig(t *testing.T) {
	if _, err := NewSSHAgent(SSHAgentConfig{}, nil, nil); err == nil {
		t.Error("an agent with no allowed keys was made")
	}
	if _, err := NewSSHAgent(SSHAgentConfig{Keys: []string{"SHA256:x"}}, []string{"not a key"}, nil); err == nil {
		t.Error("a keyring of garbage was made")
	}
}
