package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// freeAddr is a loopback address nothing listens on (released at once).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The two pods of a sandbox on Kubernetes, in one process: proxy serve
// with --tcp-proxy/--tcp-api and the relay with --listen ADDR=tcp:HOST:PORT
// (the real code of both commands), the scripted model server behind the
// proxy. The agent's request to its 127.0.0.1 port reaches the model with
// the real credential, the agent's policy applies, a peer without the key
// is refused, and the proxy ends when the agent's command does.
func TestRelayAndProxyOverTCP(t *testing.T) {
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0) })
	model := testkit.NewServer(testkit.DemoScript())
	base, err := model.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()

	dir := t.TempDir()
	writeJSON := func(name string, v any) string {
		p := filepath.Join(dir, name)
		b, _ := json.Marshal(v)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secrets := writeJSON("secrets.json", egress.SidecarSecrets{APIHeaders: map[string]string{"x-api-key": "real-key-tcp"}})
	config := writeJSON("config.json", egress.SidecarConfig{
		AuditLog:    filepath.Join(dir, "audit.jsonl"),
		APIUpstream: base,
		SecretsFile: secrets,
	})
	key, err := egress.NewChannelKey()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(egress.ChannelKeyEnv, key.Hex())

	// The proxy's pod.
	proxyAddr, apiAddr := freeAddr(t), freeAddr(t)
	var proxyLog lockedBuffer
	proxyDone := make(chan error, 1)
	go func() {
		proxyDone <- proxyServe(context.Background(), proxyServeOptions{
			ConfigPath: config, TCPProxy: proxyAddr, TCPAPI: apiAddr, ErrOut: &proxyLog,
		})
	}()
	waitListening(t, apiAddr)
	if v, ok := os.LookupEnv(egress.ChannelKeyEnv); ok {
		t.Errorf("proxy serve left %s in its environment (%d characters)", egress.ChannelKeyEnv, len(v))
	}

	// The agent's pod: the relay in front of a command that runs until
	// the test closes its stdin.
	t.Setenv(egress.ChannelKeyEnv, key.Hex())
	stdin, closeStdin, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	defer closeStdin.Close()
	var out lockedBuffer
	f := &Factory{IO: &IOStreams{In: stdin, Out: &out, ErrOut: &out}}
	relayProxy, relayAPI := freeAddr(t), freeAddr(t)
	relayDone := make(chan error, 1)
	go func() {
		relayDone <- relayRun(context.Background(), f, []string{
			relayProxy + "=tcp:" + proxyAddr,
			relayAPI + "=tcp:" + apiAddr,
		}, &relayBudget{}, &relayBundle{}, []string{"sh", "-c", "cat; echo agent saw ${" + egress.ChannelKeyEnv + ":-no key}"})
	}()
	waitListening(t, relayAPI)

	// The model API through the relay: the proxy replaced the agent's
	// placeholder key with the real one.
	body := `{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`
	req, _ := http.NewRequest("POST", "http://"+relayAPI+"/v1/messages", strings.NewReader(body))
	req.Header.Set("x-api-key", "placeholder")
	req.Header.Set("content-type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /v1/messages through the relay: %d %s", resp.StatusCode, b)
	}
	if reqs := model.Requests(); len(reqs) != 1 || reqs[0].APIKey() != "real-key-tcp" {
		t.Errorf("the model saw %d requests (key of the first: %q), want 1 with the real key", len(reqs), firstKey(reqs))
	}

	// The proxy through the relay: its policy answers (no allow rule).
	pc, err := net.Dial("tcp", relayProxy)
	if err != nil {
		t.Fatal(err)
	}
	pc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(pc, "GET http://not-allowed.invalid/ HTTP/1.1\r\nHost: not-allowed.invalid\r\n\r\n")
	presp, err := http.ReadResponse(bufio.NewReader(pc), nil)
	pc.Close()
	if err != nil || presp.StatusCode != http.StatusForbidden {
		t.Errorf("a denied request through the relay's proxy port: %v, %v; want 403", presp, err)
	}

	// Another pod on the network, without the key or with a wrong one.
	wrong, _ := egress.NewChannelKey()
	for _, send := range [][]byte{
		[]byte("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"),
		append(append([]byte{0x02}, wrong[:]...), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"...),
	} {
		c, err := net.Dial("tcp", apiAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(send)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 64))
		var ne net.Error
		if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("a peer without the key: read %d bytes, %v; want the connection closed unanswered", n, err)
		}
		c.Close()
	}
	if got := proxyLog.String(); !strings.Contains(got, "refused") || strings.Contains(got, key.Hex()) || strings.Contains(got, wrong.Hex()) {
		t.Errorf("proxy log = %q: want the refusal logged, no key", got)
	}
	if n := len(model.Requests()); n != 1 {
		t.Errorf("the model saw %d requests, want only the relay's 1", n)
	}

	// The agent exits: the relay returns and the lifeline ends the proxy.
	closeStdin.Close()
	select {
	case err := <-relayDone:
		if err != nil {
			t.Fatalf("relay: %v (output %q)", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not return after its command exited")
	}
	if got := out.String(); !strings.Contains(got, "agent saw no key") {
		t.Errorf("the agent's command output %q: the channel key reached it", got)
	}
	select {
	case err := <-proxyDone:
		if err != nil {
			t.Errorf("proxy serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy still serves after the agent's lifeline ended")
	}
	audit, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if !bytes.Contains(audit, []byte("/v1/messages")) {
		t.Errorf("the proxy's audit log lacks the model request: %s", audit)
	}
}

func firstKey(reqs []testkit.Request) string {
	if len(reqs) == 0 {
		return ""
	}
	return reqs[0].APIKey()
}

// A relay or proxy asked for the channel over TCP without a usable key
// stops with one error naming the variable, before it listens anywhere.
func TestChannelOverTCPNeedsTheKey(t *testing.T) {
	for _, val := range []string{"", "abc", strings.Repeat("g", 64)} {
		t.Run(fmt.Sprintf("%q", val), func(t *testing.T) {
			t.Setenv(egress.ChannelKeyEnv, val)
			addr := freeAddr(t)
			f := &Factory{IO: &IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}}
			err := relayRun(context.Background(), f, []string{addr + "=tcp:127.0.0.1:3128"}, &relayBudget{}, &relayBundle{}, []string{"true"})
			if err == nil || !strings.Contains(err.Error(), egress.ChannelKeyEnv) {
				t.Errorf("relay: %v, want an error naming %s", err, egress.ChannelKeyEnv)
			}
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Error("the relay listened although it refused to run")
			}
			t.Setenv(egress.ChannelKeyEnv, val)
			err = proxyServe(context.Background(), proxyServeOptions{ConfigPath: "/nonexistent/config.json", TCPAPI: addr, ErrOut: io.Discard})
			if err == nil || !strings.Contains(err.Error(), egress.ChannelKeyEnv) {
				t.Errorf("proxy serve: %v, want an error naming %s", err, egress.ChannelKeyEnv)
			}
		})
	}
}

func TestParseRelayListens(t *testing.T) {
	good := map[string]relayListen{
		"127.0.0.1:3128=/airlock/sock/proxy.sock":   {addr: "127.0.0.1:3128", socket: "/airlock/sock/proxy.sock"},
		"127.0.0.1:3129=tcp:10.244.0.7:3129":        {addr: "127.0.0.1:3129", channel: "10.244.0.7:3129"},
		"127.0.0.1:3129=tcp:proxy.airlock.svc:3129": {addr: "127.0.0.1:3129", channel: "proxy.airlock.svc:3129"},
		"127.0.0.1:3129=tcp:[fd00::7]:3129":         {addr: "127.0.0.1:3129", channel: "[fd00::7]:3129"},
	}
	for in, want := range good {
		got, err := parseRelayListens([]string{in})
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("parseRelayListens(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"127.0.0.1:3128", "=x", "127.0.0.1:3128=", "127.0.0.1:3128=tcp:", "127.0.0.1:3128=tcp:10.0.0.1", "127.0.0.1:3128=tcp::3128", "127.0.0.1:3128=tcp:10.0.0.1:0", "127.0.0.1:3128=tcp:10.0.0.1:http", "127.0.0.1:3128=tcp:10.0.0.1:70000"} {
		if _, err := parseRelayListens([]string{in}); err == nil {
			t.Errorf("parseRelayListens(%q) accepted", in)
		}
	}
}
