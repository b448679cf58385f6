package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// fakeResolver maps names to addresses; nothing ever leaves the machine.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testProxy struct {
	proxyAddr string
	apiURL    string
	log       *syncBuffer
}

// startProxy serves cfg on loopback listeners until the test ends.
func startProxy(t testing.TB, cfg Config) *testProxy {
	t.Helper()
	return startProxyWith(t, cfg, nil)
}

// startProxyWith is startProxy, handing the server to got first.
func startProxyWith(t testing.TB, cfg Config, got func(*Server)) *testProxy {
	t.Helper()
	logBuf := &syncBuffer{}
	cfg.Audit = NewAuditLog(logBuf)
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got != nil {
		got(srv)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pl, al) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testProxy{proxyAddr: pl.Addr().String(), apiURL: "http://" + al.Addr().String(), log: logBuf}
}

// records waits until the audit log holds n records.
func (p *testProxy) records(t testing.TB, n int) []Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := ReadRecords(strings.NewReader(p.log.String()))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) != n {
				t.Fatalf("audit log has %d records, want %d:\n%s", len(recs), n, p.log.String())
			}
			return recs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *testProxy) client() *http.Client {
	pu, _ := url.Parse("http://" + p.proxyAddr)
	return &http.Client{
		Transport:     &http.Transport{Proxy: http.ProxyURL(pu)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// rawConnect sends a CONNECT and returns the response and the connection.
func rawConnect(t testing.TB, proxyAddr, target string, header http.Header) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var hdr strings.Builder
	header.Write(&hdr)
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, hdr.String()); err != nil {
		t.Fatal(err)
	}
	req := &http.Request{Method: http.MethodConnect}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, c, br
}

func port(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func loopbackPolicy(t testing.TB, allow ...string) Policy {
	return Policy{Allow: mustRules(t.(*testing.T), allow...), AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
}

var lo = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

func assertDenied(t *testing.T, resp *http.Response, wantReason string) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403; body %s", resp.StatusCode, body)
	}
	h := resp.Header.Get("X-Airlock-Denied")
	if !strings.Contains(h, wantReason) {
		t.Errorf("X-Airlock-Denied = %q, want it to contain %q", h, wantReason)
	}
	if !strings.Contains(string(body), wantReason) || strings.Count(string(body), "\n") != 1 {
		t.Errorf("body %q: want one line containing %q", body, wantReason)
	}
}

func TestConnectAllowedTLS(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, strings.Repeat("x", 5000))
	}))
	defer up.Close()
	upPort := port(t, up.Listener.Addr().String())
	p := startProxy(t, Config{
		Policy:   loopbackPolicy(t, fmt.Sprintf("api.example.com:%d", upPort)),
		Resolver: fakeResolver{"api.example.com": lo},
	})
	c := p.client()
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig = up.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	resp, err := c.Get(fmt.Sprintf("https://api.example.com:%d/hello", upPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(body) != 5000 {
		t.Fatalf("got %d bytes, want 5000", len(body))
	}
	tr.CloseIdleConnections()
	r := p.records(t, 1)[0]
	if r.Kind != KindConnect || !r.Allowed || r.Host != "api.example.com" || r.Port != upPort ||
		r.Addr != up.Listener.Addr().String() || r.Rule != fmt.Sprintf("api.example.com:%d", upPort) {
		t.Errorf("record = %+v", r)
	}
	if r.BytesDown < 5000 || r.BytesUp < 200 || !strings.Contains(r.Reason, "sni api.example.com") {
		t.Errorf("record bytes/reason = %d up, %d down, %q", r.BytesUp, r.BytesDown, r.Reason)
	}
}

func TestConnectDenied(t *testing.T) {
	p := startProxy(t, Config{
		Policy: Policy{
			Allow: mustRules(t, "*.example.com"),
			Deny:  mustRules(t, "secret.example.com"),
		},
		Resolver: fakeResolver{},
	})
	cases := []struct{ target, reason, hint string }{
		{"other.example.net:443", "other.example.net:443 is not in the allowlist", "--allow other.example.net"},
		{"other.example.net:8443", "not in the allowlist", "--allow other.example.net:8443"},
		{"secret.example.com:443", "denied by rule secret.example.com", "deny rules beat allow rules"},
		{"192.0.2.7:443", "IP address 192.0.2.7 is not an allow rule", "--allow 192.0.2.7"},
	}
	for _, tc := range cases {
		resp, _, _ := rawConnect(t, p.proxyAddr, tc.target, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		assertDenied(t, resp, tc.reason)
		if !strings.Contains(string(body), tc.hint) {
			t.Errorf("%s: body %q lacks hint %q", tc.target, body, tc.hint)
		}
	}
	// These bypasses do not even parse as requests in net/http (400).
	for _, target := range []string{"attacker.com\x00.example.com:443", "api%2eexample.com:443", "a.example.com\r\nX:1"} {
		resp, _, _ := rawConnect(t, p.proxyAddr, target, nil)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("CONNECT %q: status %d, want 400", target, resp.StatusCode)
		}
	}
	resp, _, _ := rawConnect(t, p.proxyAddr, "a.example.com.:443", nil)
	if resp.StatusCode != http.StatusBadGateway { // allowed, canonical; the fake resolver knows nothing
		t.Errorf("trailing dot: status %d, want 502 from the lookup", resp.StatusCode)
	}
	for i, r := range p.records(t, len(cases)+1)[:len(cases)] {
		if r.Allowed || r.Kind != KindConnect || r.Reason == "" {
			t.Errorf("record %d = %+v, want a denied connect with a reason", i, r)
		}
	}
}

// acceptRecorder is a listener that counts connections it receives.
func acceptRecorder(t *testing.T) (addr string, accepts *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepts = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), accepts
}

func TestPrivateAddressesRefusedBeforeDial(t *testing.T) {
	addr, accepts := acceptRecorder(t)
	pt := port(t, addr)
	names := map[string]string{
		"loop.example.com": "127.0.0.1",
		"ten.example.com":  "10.0.0.1",
		"meta.example.com": "169.254.169.254",
		"v6.example.com":   "::ffff:127.0.0.1",
	}
	res := fakeResolver{}
	var allow []string
	for n, a := range names {
		res[n] = []netip.Addr{netip.MustParseAddr(a)}
		allow = append(allow, fmt.Sprintf("%s:%d", n, pt))
	}
	p := startProxy(t, Config{Policy: Policy{Allow: mustRules(t, allow...)}, Resolver: res})
	for n := range names {
		resp, _, _ := rawConnect(t, p.proxyAddr, fmt.Sprintf("%s:%d", n, pt), nil)
		assertDenied(t, resp, "allow_cidrs")
		resp, err := p.client().Get(fmt.Sprintf("http://%s:%d/", n, pt))
		if err != nil {
			t.Fatal(err)
		}
		assertDenied(t, resp, "allow_cidrs")
	}
	time.Sleep(50 * time.Millisecond)
	if n := accepts.Load(); n != 0 {
		t.Fatalf("listener saw %d connections, want none", n)
	}
	for _, r := range p.records(t, 2*len(names)) {
		if r.Allowed || r.Addr != "" {
			t.Errorf("record %+v: want denied with no address dialled", r)
		}
	}
}

func TestDialControlRechecksAddress(t *testing.T) {
	addr, accepts := acceptRecorder(t)
	s, err := NewServer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	// As if the name had resolved to something public and then rebound:
	// the socket-level check still refuses loopback.
	_, err = s.dial(context.Background(), lo, port(t, addr))
	var d *denial
	if !errors.As(err, &d) || !strings.Contains(d.reason, "loopback") {
		t.Fatalf("dial = %v, want a loopback denial", err)
	}
	if accepts.Load() != 0 {
		t.Fatal("the refused address was connected to")
	}
}

// echoServer answers every connection by echoing what it reads.
func echoServer(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestConnectIPLiteral(t *testing.T) {
	echo := echoServer(t)
	t.Run("listed", func(t *testing.T) {
		p := startProxy(t, Config{Policy: Policy{
			Allow:      mustRules(t, echo),
			AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		}})
		resp, c, br := rawConnect(t, p.proxyAddr, echo, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		fmt.Fprint(c, "ping\n")
		line, err := br.ReadString('\n')
		if err != nil || line != "ping\n" {
			t.Fatalf("echo = %q, %v", line, err)
		}
		c.(*net.TCPConn).CloseWrite()
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Errorf("unexpected %q after half-close", rest)
		}
		r := p.records(t, 1)[0]
		if !r.Allowed || r.BytesUp != 5 || r.BytesDown != 5 || r.Addr != echo {
			t.Errorf("record = %+v", r)
		}
	})
	t.Run("unlisted", func(t *testing.T) {
		p := startProxy(t, Config{Policy: Policy{
			Allow:      mustRules(t, "127.0.0.2"),
			AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		}})
		resp, _, _ := rawConnect(t, p.proxyAddr, echo, nil)
		assertDenied(t, resp, "IP address 127.0.0.1 is not an allow rule")
	})
}

func TestConnectSNI(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	upPort := port(t, up.Listener.Addr().String())
	target := fmt.Sprintf("api.example.com:%d", upPort)
	p := startProxy(t, Config{Policy: loopbackPolicy(t, target), Resolver: fakeResolver{"api.example.com": lo}})

	resp, c, _ := rawConnect(t, p.proxyAddr, target, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "other.example.com", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("TLS handshake with a mismatched SNI succeeded")
	}
	r := p.records(t, 1)[0]
	if r.Allowed || !strings.Contains(r.Reason, "SNI other.example.com does not match CONNECT host api.example.com") {
		t.Errorf("record = %+v", r)
	}

	// Not TLS at all, to a name: refused too.
	_, c, br := rawConnect(t, p.proxyAddr, target, nil)
	fmt.Fprint(c, "GET / HTTP/1.0\r\n\r\n")
	if b, _ := io.ReadAll(br); len(b) != 0 {
		t.Errorf("plain text through a name tunnel got %q", b)
	}
	if r := p.records(t, 2)[1]; r.Allowed || !strings.Contains(r.Reason, "not TLS") {
		t.Errorf("record = %+v", r)
	}
}

// A tunnel refused for its SNI never opens a connection to the host.
func TestConnectSNIMismatchDialsNothing(t *testing.T) {
	addr, accepts := acceptRecorder(t)
	target := fmt.Sprintf("api.example.com:%d", port(t, addr))
	p := startProxy(t, Config{Policy: loopbackPolicy(t, target), Resolver: fakeResolver{"api.example.com": lo}})
	_, c, _ := rawConnect(t, p.proxyAddr, target, nil)
	tc := tls.Client(c, &tls.Config{ServerName: "other.example.com", InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("TLS handshake with a mismatched SNI succeeded")
	}
	if r := p.records(t, 1)[0]; r.Allowed || r.Addr != "" {
		t.Errorf("record = %+v, want denied with no address dialled", r)
	}
	if n := accepts.Load(); n != 0 {
		t.Fatalf("the upstream accepted %d connections for a refused tunnel", n)
	}
}

func TestForwardPlainHTTP(t *testing.T) {
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Proxy-Authorization") != "" || r.Header.Get("Proxy-Connection") != "" {
			t.Errorf("upstream saw proxy headers: %v", r.Header)
		}
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://elsewhere.example.net/", http.StatusFound)
			return
		}
		fmt.Fprintf(w, "host=%s path=%s q=%s", r.Host, r.URL.Path, r.URL.RawQuery)
	}))
	defer up.Close()
	upPort := port(t, up.Listener.Addr().String())
	p := startProxy(t, Config{
		Policy:   loopbackPolicy(t, fmt.Sprintf("web.example.com:%d", upPort)),
		Resolver: fakeResolver{"web.example.com": lo},
	})
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://web.example.com:%d/a/b?x=1", upPort), nil)
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	resp, err := p.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf("host=web.example.com:%d path=/a/b q=x=1", upPort)
	if resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want)
	}
	resp, err = p.client().Get(fmt.Sprintf("http://web.example.com:%d/redirect", upPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || hits.Load() != 2 {
		t.Errorf("redirect: status %d, upstream hits %d; want 302 passed back, not followed", resp.StatusCode, hits.Load())
	}
	recs := p.records(t, 2)
	r := recs[0]
	if r.Kind != KindHTTP || r.Method != "GET" || !r.Allowed || r.Path != "/a/b" || r.Addr != up.Listener.Addr().String() ||
		r.BytesDown != int64(len(want)) || r.Reason != "status 200" {
		t.Errorf("record = %+v", r)
	}
	if recs[1].Reason != "status 302" {
		t.Errorf("redirect record = %+v", recs[1])
	}
}

func TestSecretsBlocked(t *testing.T) {
	held := "Hk3r9TzQ2mVx8LwP5nYb"
	token := "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer up.Close()
	upPort := port(t, up.Listener.Addr().String())
	p := startProxy(t, Config{
		Policy:   loopbackPolicy(t, fmt.Sprintf("*.example.com:%d", upPort), "*.example.com"),
		Held:     []string{held},
		Resolver: fakeResolver{"web.example.com": lo},
	})
	base := fmt.Sprintf("http://web.example.com:%d", upPort)

	resp, err := p.client().Get(base + "/upload?data=" + token)
	if err != nil {
		t.Fatal(err)
	}
	assertDenied(t, resp, `secret scan: github-pat in query value "data"`)

	req, _ := http.NewRequest("GET", base+"/", nil)
	req.Header.Set("X-Data", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789")
	resp, err = p.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	assertDenied(t, resp, "secret scan: anthropic-api-key in header X-Data")

	resp, _, _ = rawConnect(t, p.proxyAddr, "hk3r9tzq2m.vx8lwp5nyb.exfil.example.com:443", nil)
	assertDenied(t, resp, "secret scan: held-secret in host name")

	if hits.Load() != 0 {
		t.Errorf("upstream received %d requests", hits.Load())
	}
	recs := p.records(t, 3)
	log := strings.ToLower(p.log.String())
	for _, s := range []string{held, token, "sk-ant-", "hk3r9"} {
		if strings.Contains(log, strings.ToLower(s)) {
			t.Errorf("audit log contains secret %q:\n%s", s, log)
		}
	}
	if recs[2].Host != "[redacted].example.com" || recs[2].Rule != "held-secret" || recs[0].Rule != "github-pat" {
		t.Errorf("records = %+v", recs)
	}
}

func TestAPIHandler(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if got := r.Header.Get("X-Api-Key"); got != "real-key-123456" {
			t.Errorf("upstream x-api-key = %q", got)
		}
		if r.Header.Get("Authorization") != "" {
			t.Errorf("upstream got Authorization %q", r.Header.Get("Authorization"))
		}
		if r.URL.Path != "/base/v1/messages" || r.URL.RawQuery != "beta=true" {
			t.Errorf("upstream path %s?%s", r.URL.Path, r.URL.RawQuery)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Should-Retry", "false")
		fmt.Fprint(w, "event: message_start\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "event: message_stop\ndata: {}\n\n")
	}))
	defer up.Close()
	defer close(release)
	u, _ := url.Parse(up.URL + "/base")
	p := startProxy(t, Config{API: &APIConfig{
		Upstream:    u,
		Headers:     map[string]string{"x-api-key": "real-key-123456"},
		Placeholder: "placeholder",
	}})

	resp, err := http.Get(p.apiURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok" || hits.Load() != 0 {
		t.Fatalf("healthz = %d %q, upstream hits %d", resp.StatusCode, b, hits.Load())
	}

	req, _ := http.NewRequest("POST", p.apiURL+"/v1/messages?beta=true", strings.NewReader(`{"stream":true}`))
	req.Header.Set("X-Api-Key", "placeholder")
	req.Header.Set("Authorization", "Bearer placeholder")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("x-should-retry = %q", resp.Header.Get("X-Should-Retry"))
	}
	// The first event must arrive while the upstream is still holding the
	// stream open: nothing may be buffered.
	br := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() { l, _ := br.ReadString('\n'); got <- l }()
	select {
	case l := <-got:
		if l != "event: message_start\n" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("first SSE event did not arrive before the stream ended: response is buffered")
	}
	release <- struct{}{}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "message_stop") {
		t.Errorf("rest of stream %q", rest)
	}
	r := p.records(t, 1)[0]
	if r.Kind != KindAPI || r.Method != "POST" || r.Path != "/v1/messages" || r.BytesUp != 15 || r.BytesDown < 40 || r.Reason != "status 200" {
		t.Errorf("record = %+v", r)
	}
	if strings.Contains(p.log.String(), "real-key") {
		t.Error("audit log contains the real key")
	}
}

func TestRelay(t *testing.T) {
	dir := t.TempDir()
	sock := dir + "/proxy.sock"

	// The proxy behind the socket.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "through") }))
	defer up.Close()
	upPort := port(t, up.Listener.Addr().String())
	srv, err := NewServer(Config{
		Policy:   loopbackPolicy(t, fmt.Sprintf("web.example.com:%d", upPort)),
		Resolver: fakeResolver{"web.example.com": lo},
	})
	if err != nil {
		t.Fatal(err)
	}
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	pctx, stopProxy := context.WithCancel(context.Background())
	proxyDone := make(chan error, 1)
	go func() { proxyDone <- srv.Serve(pctx, ul, nil) }()

	// The relay inside the sandbox.
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRelay := context.WithCancel(context.Background())
	relayDone := make(chan error, 1)
	go func() { relayDone <- Relay(rctx, rl, sock) }()

	pu, _ := url.Parse("http://" + rl.Addr().String())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://web.example.com:%d/", upPort))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "through" {
		t.Fatalf("through relay: %q", b)
	}

	// Proxy gone: the relay must close connections, not pass them anywhere.
	stopProxy()
	if err := <-proxyDone; err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(conn, "CONNECT web.example.com:%d HTTP/1.1\r\nHost: x\r\n\r\n", upPort)
	n, err := conn.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read after proxy died = %d, %v; want the connection closed", n, err)
	}
	conn.Close()

	stopRelay()
	if err := <-relayDone; err != nil {
		t.Fatalf("Relay: %v", err)
	}
	if _, err := net.Dial("tcp", rl.Addr().String()); err == nil {
		t.Error("relay still listening after its context ended")
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	bad := []Config{
		{Policy: Policy{Mode: "closed"}},
		{API: &APIConfig{}},
		{API: &APIConfig{Upstream: &url.URL{Scheme: "ftp", Host: "x"}}},
		{API: &APIConfig{Upstream: &url.URL{Scheme: "https", Host: "x"}, Headers: map[string]string{"x-api-key": "a\r\nb"}}},
		{Policy: Policy{Allow: []Rule{{Source: "airlock.toml:3"}}}},
	}
	for i, cfg := range bad {
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

// The agent's container starts while its proxy comes up: a connection made
// before the proxy's socket exists waits for it and then goes through the
// proxy; one to a socket nobody listens on any more (a dead proxy) is closed
// at once, not held.
func TestRelayWaitsForTheProxy(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "proxy.sock")
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Relay(ctx, rl, sock)

	c, err := net.Dial("tcp", rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // the relay is now waiting for the socket
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	pl := PassListener(ln.(*net.UnixListener), nil)
	go func() {
		pc, err := pl.Accept()
		if err != nil {
			return
		}
		defer pc.Close()
		pc.Write([]byte("through the proxy"))
	}()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(io.LimitReader(c, 17))
	if string(got) != "through the proxy" {
		t.Fatalf("read %q; want the proxy's answer once it came up", got)
	}

	// The proxy dies; its socket stays behind.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	pl.Close()
	c2, err := net.Dial("tcp", rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	n, err := c2.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a dead proxy = %d, %v; want the connection closed", n, err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("a dead proxy's connection was held %s", waited)
	}
}

// A model response the upstream cuts midway is logged as cut, with why,
// not as the status it began with; the agent's connection is dropped, so
// it sees the stream end unfinished rather than a complete short answer.
func TestAPIResponseCutMidway(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: message_start\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	p := startProxy(t, Config{API: &APIConfig{Upstream: u, Headers: map[string]string{"x-api-key": "k"}}})
	resp, err := http.Post(p.apiURL+"/v1/messages", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("the agent read a complete response: %q", b)
	}
	r := p.records(t, 1)[0]
	if want := "status 200, cut midway: reading the upstream's response: unexpected EOF"; r.Reason != want {
		t.Errorf("reason = %q, want %q", r.Reason, want)
	}
}

// An upstream may answer before it has read the whole request (a stream
// that starts at once). The proxy must keep carrying the agent's body
// while the answer streams back: Go's server closes a request's body once
// the response has begun unless told otherwise, and the proxy's upstream
// connection, its body then unreadable, was torn down mid-answer — under
// load it cut about one model response in a few thousand this way.
func TestAPIBodyStillFlowsWhileTheAnswerStreams(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: message_start\ndata: {}\n\n")
		rc.Flush()
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "event: message_stop\ndata: {\"got\":%d,\"err\":%q}\n\n", len(b), fmt.Sprint(err))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	p := startProxy(t, Config{API: &APIConfig{Upstream: u, Headers: map[string]string{"x-api-key": "k"}}})

	c, err := net.Dial("tcp", strings.TrimPrefix(p.apiURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	body := strings.Repeat("x", 1000)
	fmt.Fprintf(c, "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb := bufio.NewReader(resp.Body)
	if l, err := rb.ReadString('\n'); l != "event: message_start\n" {
		t.Fatalf("first line %q, %v", l, err)
	}
	// Only now, with the answer under way, does the body go.
	io.WriteString(c, body)
	rest, err := io.ReadAll(rb)
	if err != nil || !strings.Contains(string(rest), `"got":1000,"err":"<nil>"`) {
		t.Fatalf("rest of the answer %q, %v; want the upstream to have read the whole body", rest, err)
	}
}

// A protocol upgrade (a WebSocket over plain HTTP) passes through the
// forward proxy: the switched connection carries bytes both ways.
func TestForwardUpgrade(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	}))
	defer up.Close()
	upPort := port(t, up.Listener.Addr().String())
	p := startProxy(t, Config{
		Policy:   loopbackPolicy(t, fmt.Sprintf("web.example.com:%d", upPort)),
		Resolver: fakeResolver{"web.example.com": lo},
	})
	c, err := net.Dial("tcp", p.proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	target := fmt.Sprintf("web.example.com:%d", upPort)
	fmt.Fprintf(c, "GET http://%s/ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	r, err := http.ReadResponse(br, nil)
	if err != nil || r.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", r, err)
	}
	fmt.Fprint(c, "ping\n")
	if got, _ := br.ReadString('\n'); got != "echo ping\n" {
		t.Errorf("through the upgraded connection: %q", got)
	}
}

// The proxy's socket exists a moment before the proxy listens on it (bind,
// then listen): a connection that waited for the socket and then meets
// that moment still goes through, however long it waited before.
func TestRelayWaitsThroughTheBindToListenMoment(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Relay(ctx, rl, sock)
	c, err := net.Dial("tcp", rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	time.Sleep(300 * time.Millisecond) // waiting for the socket
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // there, refusing
	if err := syscall.Listen(fd, 8); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), sock)
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pl := PassListener(ln.(*net.UnixListener), nil)
	defer pl.Close()
	go func() {
		pc, err := pl.Accept()
		if err != nil {
			return
		}
		defer pc.Close()
		pc.Write([]byte("through the proxy"))
	}()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(io.LimitReader(c, 17))
	if string(got) != "through the proxy" {
		t.Fatalf("read %q; want the proxy's answer once it listened", got)
	}
}
