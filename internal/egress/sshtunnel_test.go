package egress

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// sshProxy is a proxy whose SSH port is the port of a loopback server
// that answers like an SSH server (its own identification string, then an
// echo of what it read).
func sshProxy(t *testing.T) (proxyAddr, target string, log *syncBuffer) {
	t.Helper()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "SSH-2.0-TestServer\r\n")
				io.Copy(c, c)
			}()
		}
	}()
	upPort := port(t, up.Addr().String())
	target = fmt.Sprintf("git.example.com:%d", upPort)
	log = &syncBuffer{}
	srv, err := NewServer(Config{Policy: loopbackPolicy(t, target), Resolver: fakeResolver{"git.example.com": lo}, Audit: NewAuditLog(log)})
	if err != nil {
		t.Fatal(err)
	}
	srv.sshPort = upPort
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pl, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	return pl.Addr().String(), target, log
}

func TestConnectSSH(t *testing.T) {
	proxyAddr, target, log := sshProxy(t)
	tp := &testProxy{proxyAddr: proxyAddr, log: log}

	// An SSH client speaks first; the tunnel carries it.
	resp, c, br := rawConnect(t, proxyAddr, target, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\nafter\n")
	line, _ := br.ReadString('\n')
	echo, _ := br.ReadString('\n')
	if line != "SSH-2.0-TestServer\r\n" || !strings.HasPrefix(echo, "SSH-2.0-OpenSSH_9.2p1") {
		t.Fatalf("through the tunnel: %q %q", line, echo)
	}
	c.Close()
	r := tp.records(t, 1)[0]
	if !r.Allowed || r.Reason != "tunnel, ssh SSH-2.0-OpenSSH_9.2p1" {
		t.Errorf("record = %+v", r)
	}

	// Anything else on the SSH port is refused before anything is dialled.
	for i, first := range []string{"GET / HTTP/1.0\r\n\r\n", "SSH-1.5-old\r\n", "\x16\x03\x01\x02\x00", "SSH-2.0-" + strings.Repeat("x", 300)} {
		_, c, br := rawConnect(t, proxyAddr, target, nil)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, first)
		if b, _ := io.ReadAll(br); len(b) != 0 {
			t.Errorf("%q got %q back", first, b)
		}
		r := tp.records(t, i+2)[i+1]
		if r.Allowed || !strings.Contains(r.Reason, "not SSH") || r.Addr != "" {
			t.Errorf("%q: record = %+v", first, r)
		}
	}
}

// TLS on other ports is checked as before: SSH does not get through there.
func TestConnectSSHOnlyOnTheSSHPort(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	target := fmt.Sprintf("git.example.com:%d", port(t, up.Addr().String()))
	p := startProxy(t, Config{Policy: loopbackPolicy(t, target), Resolver: fakeResolver{"git.example.com": lo}})
	_, c, br := rawConnect(t, p.proxyAddr, target, nil)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "SSH-2.0-OpenSSH_9.2p1\r\n")
	if b, _ := io.ReadAll(br); len(b) != 0 {
		t.Errorf("got %q back", b)
	}
	if r := p.records(t, 1)[0]; r.Allowed || !strings.Contains(r.Reason, "not TLS") {
		t.Errorf("record = %+v", r)
	}
}

func TestFilterKnownHosts(t *testing.T) {
	salt := []byte("0123456789abcdefghij")
	mac := hmac.New(sha1.New, salt)
	mac.Write([]byte("hashed.example.com"))
	hashed := "|1|" + base64.StdEncoding.EncodeToString(salt) + "|" + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	data := strings.Join([]string{
		"# comment",
		"git.example.com,192.0.2.9 ssh-ed25519 AAAAgit",
		"other.example.com ssh-ed25519 AAAAother",
		hashed + " ssh-ed25519 AAAAhashed",
		"[git.example.com]:2222 ssh-ed25519 AAAAport",
		"@cert-authority *.corp.example ssh-ed25519 AAAAca",
		"a.corp.example ssh-rsa AAAAcorp",
		"!git.example.com ssh-ed25519 AAAAneg",
		"",
	}, "\n")
	rules := mustRules(t, "git.example.com:22", "hashed.example.com:22", "*.corp.example:22", "missing.example.com:22")
	kept, found := FilterKnownHosts([]byte(data), rules)
	want := "git.example.com,192.0.2.9 ssh-ed25519 AAAAgit\n" + hashed + " ssh-ed25519 AAAAhashed\na.corp.example ssh-rsa AAAAcorp\n"
	if string(kept) != want {
		t.Errorf("kept:\n%s\nwant:\n%s", kept, want)
	}
	for _, h := range []string{"git.example.com", "hashed.example.com"} {
		if !found[h] {
			t.Errorf("%s not found", h)
		}
	}
	if found["missing.example.com"] || found["*.corp.example"] {
		t.Errorf("found = %v", found)
	}
}

func TestSSHRules(t *testing.T) {
	p := Policy{Allow: mustRules(t, "github.com:22", "github.com", "*.example.com:22", "api.example.com:443")}
	got := SSHRules(p)
	if len(got) != 2 || got[0].Pattern != "github.com" || got[1].Pattern != "*.example.com" {
		t.Errorf("SSHRules = %v", got)
	}
}
