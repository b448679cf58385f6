package egress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewCAIsNameConstrained(t *testing.T) {
	ca, err := NewCA("test run", []string{"*.example.com", "npm.test:8443"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	li, err := NewLeafIssuer(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(ca.Cert)) {
		t.Fatal("CA is not PEM")
	}
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"example.com", true},
		{"reg.example.com", true},
		{"npm.test", true},
		{"evil.test", false},
		{"example.com.evil.test", false},
		{"notexample.com", false},
	} {
		c, err := li.Leaf(tt.host)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		_, err = leaf.Verify(x509.VerifyOptions{DNSName: tt.host, Roots: pool})
		if (err == nil) != tt.ok {
			t.Errorf("leaf for %s: verify error %v, want ok=%v", tt.host, err, tt.ok)
		}
	}
	if strings.Contains(ca.Cert, "PRIVATE") || !strings.Contains(ca.Key, "PRIVATE KEY") {
		t.Error("the certificate and the key are mixed up")
	}
	if _, err := NewCA("x", []string{"10.1.2.3"}, time.Now().Add(time.Hour)); err == nil {
		t.Error("an IP address pattern made a CA")
	}
}

// upstreamSeen records what an HTTPS upstream received.
type upstreamSeen struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (u *upstreamSeen) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		return nil
	}
	return u.reqs[len(u.reqs)-1]
}

// interceptSetup is a proxy intercepting reg.example.com (an httptest TLS
// upstream) with an injected header, and a client of it that trusts only
// the run's CA, as the sandbox does.
func interceptSetup(t *testing.T, inj ...Injection) (*testProxy, *http.Client, *upstreamSeen, int, *httptest.Server) {
	t.Helper()
	seen := &upstreamSeen{}
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.mu.Lock()
		seen.reqs = append(seen.reqs, r)
		seen.mu.Unlock()
		fmt.Fprintf(w, "ok %s", r.URL.Path)
	}))
	t.Cleanup(up.Close)
	upPort := port(t, up.Listener.Addr().String())
	for i := range inj {
		inj[i].Host = strings.ReplaceAll(inj[i].Host, "PORT", fmt.Sprint(upPort))
	}
	ca, err := NewCA("test run", []string{"reg.example.com", "other.example.com"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	// The host adds every injected secret to the held ones.
	held := []string{testSecret}
	p := startProxy(t, Config{
		Policy: loopbackPolicy(t, fmt.Sprintf("reg.example.com:%d", upPort), fmt.Sprintf("other.example.com:%d", upPort),
			"plain.example.com:"+fmt.Sprint(upPort)),
		Resolver:      fakeResolver{"reg.example.com": lo, "other.example.com": lo, "plain.example.com": lo},
		Held:          held,
		Inject:        inj,
		CA:            &ca,
		UpstreamRoots: roots,
	})
	c := p.client()
	sandboxRoots := x509.NewCertPool()
	sandboxRoots.AppendCertsFromPEM([]byte(ca.Cert))
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: sandboxRoots}
	return p, c, seen, upPort, up
}

const (
	testSecret      = "s3cr3t-registry-token-0123456789"
	testPlaceholder = "airlock-placeholder-0123456789abcdef"
)

func TestInterceptInjectsHeader(t *testing.T) {
	p, c, seen, upPort, _ := interceptSetup(t, Injection{Host: "reg.example.com:PORT", Header: "Authorization",
		Value: "Bearer " + testSecret, Placeholder: testPlaceholder, From: "config.toml:3"})
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://reg.example.com:%d/pkg/left-pad", upPort), nil)
	req.Header.Set("Authorization", "Bearer "+testPlaceholder)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok /pkg/left-pad" {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	if got := seen.last().Header.Get("Authorization"); got != "Bearer "+testSecret {
		t.Errorf("the upstream got Authorization %q, want the real token", got)
	}
	if seen.last().Host != fmt.Sprintf("reg.example.com:%d", upPort) {
		t.Errorf("the upstream got Host %q", seen.last().Host)
	}
	// A second request on the same tunnel is injected too. What the
	// sandbox puts where the credential goes is replaced, not scanned: a
	// tool's own token format there is no reason to refuse.
	req, _ = http.NewRequest("GET", fmt.Sprintf("https://reg.example.com:%d/two", upPort), nil)
	req.Header.Set("Authorization", "token ghp_"+strings.Repeat("a1B2", 9))
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := seen.last().Header.Get("Authorization"); resp.StatusCode != 200 || got != "Bearer "+testSecret {
		t.Errorf("second request: status %d, Authorization %q", resp.StatusCode, got)
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	recs := p.records(t, 3)
	for _, r := range recs[:2] {
		if r.Kind != KindHTTPS || !r.Allowed || r.Host != "reg.example.com" ||
			!strings.Contains(r.Reason, "status 200; injected header Authorization") {
			t.Errorf("request record = %+v", r)
		}
	}
	if r := recs[2]; r.Kind != KindConnect || !r.Allowed || !strings.Contains(r.Reason, "intercepted") ||
		!strings.Contains(r.Reason, "2 requests") {
		t.Errorf("tunnel record = %+v", r)
	}
	if strings.Contains(p.log.String(), testSecret) || strings.Contains(p.log.String(), testPlaceholder) {
		t.Error("the audit log holds the credential or its placeholder")
	}
}

func TestInterceptInjectsQuery(t *testing.T) {
	_, c, seen, upPort, _ := interceptSetup(t, Injection{Host: "reg.example.com:PORT", Query: "access_token",
		Value: testSecret, Placeholder: testPlaceholder})
	resp, err := c.Get(fmt.Sprintf("https://reg.example.com:%d/x?a=1&access_token=%s&b=2", upPort, testPlaceholder))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	q := seen.last().URL.Query()
	if q["access_token"][0] != testSecret || len(q["access_token"]) != 1 || q.Get("a") != "1" || q.Get("b") != "2" {
		t.Errorf("the upstream got query %q", seen.last().URL.RawQuery)
	}
}

func TestInterceptRefusals(t *testing.T) {
	p, c, seen, upPort, up := interceptSetup(t, Injection{Host: "reg.example.com:PORT", Header: "Authorization",
		Value: "Bearer " + testSecret, Placeholder: testPlaceholder})
	plain := func(target string, h http.Header) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", target, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := p.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	plainURL := fmt.Sprintf("http://plain.example.com:%d/x", upPort)

	t.Run("placeholder to another host", func(t *testing.T) {
		assertDenied(t, plain(plainURL, http.Header{"Authorization": {"Bearer " + testPlaceholder}}), "placeholder of the credential injected for reg.example.com")
		assertDenied(t, plain(plainURL+"?t="+testPlaceholder, nil), "placeholder")
	})
	t.Run("the real token to another host", func(t *testing.T) {
		assertDenied(t, plain(plainURL, http.Header{"X-Token": {testSecret}}), "held-secret")
	})
	t.Run("another name inside the tunnel", func(t *testing.T) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("https://reg.example.com:%d/fronted", upPort), nil)
		req.Host = "plain.example.com"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		assertDenied(t, resp, "does not match the tunnel's host")
		if r := seen.last(); r != nil && r.URL.Path == "/fronted" {
			t.Error("the fronted request reached the upstream")
		}
	})
	t.Run("a host without injection is not intercepted", func(t *testing.T) {
		// The sandbox trusts only the run's CA here: the upstream's own
		// certificate, passed through untouched, fails.
		_, err := c.Get(fmt.Sprintf("https://other.example.com:%d/", upPort))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("a tunnel to a host without injection was intercepted: %v", err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(up.Certificate())
		direct := p.client()
		direct.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
		resp, err := direct.Get(fmt.Sprintf("https://other.example.com:%d/opaque", upPort))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := seen.last().Header.Get("Authorization"); got != "" {
			t.Errorf("a host without injection got Authorization %q", got)
		}
	})
}

// The proxy verifies the real host's certificate: an upstream the proxy
// does not trust gets no request, and no credential.
func TestInterceptVerifiesUpstream(t *testing.T) {
	seen := false
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = true }))
	defer up.Close()
	upPort := port(t, up.Listener.Addr().String())
	ca, err := NewCA("t", []string{"reg.example.com"}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, Config{
		Policy:        loopbackPolicy(t, fmt.Sprintf("reg.example.com:%d", upPort)),
		Resolver:      fakeResolver{"reg.example.com": lo},
		Inject:        []Injection{{Host: "reg.example.com", Header: "Authorization", Value: "Bearer " + testSecret}},
		CA:            &ca,
		UpstreamRoots: x509.NewCertPool(), // trusts nothing
	})
	_ = p
	// The injection's pattern has no port: only 443 and 80 are
	// intercepted, so this tunnel stays opaque...
	c := p.client()
	sandboxRoots := x509.NewCertPool()
	sandboxRoots.AppendCertsFromPEM([]byte(ca.Cert))
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: sandboxRoots}
	if _, err := c.Get(fmt.Sprintf("https://reg.example.com:%d/", upPort)); err == nil {
		t.Error("a port the injection does not cover was intercepted")
	}
	// ...and one that is intercepted refuses the untrusted upstream.
	p2 := startProxy(t, Config{
		Policy:        loopbackPolicy(t, fmt.Sprintf("reg.example.com:%d", upPort)),
		Resolver:      fakeResolver{"reg.example.com": lo},
		Inject:        []Injection{{Host: fmt.Sprintf("reg.example.com:%d", upPort), Header: "Authorization", Value: "Bearer " + testSecret}},
		CA:            &ca,
		UpstreamRoots: x509.NewCertPool(),
	})
	c2 := p2.client()
	c2.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: sandboxRoots}
	resp, err := c2.Get(fmt.Sprintf("https://reg.example.com:%d/", upPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "certificate") || seen {
		t.Errorf("untrusted upstream: status %d, body %q, reached %v", resp.StatusCode, body, seen)
	}
}

func TestNewServerInjectionNeedsCA(t *testing.T) {
	_, err := NewServer(Config{Inject: []Injection{{Host: "reg.example.com", Header: "Authorization", Value: "x"}}})
	if err == nil {
		t.Error("injections without a CA were accepted")
	}
	ca, _ := NewCA("t", []string{"reg.example.com"}, time.Now().Add(time.Hour))
	for _, in := range []Injection{
		{Host: "reg.example.com", Header: "Authorization", Value: "a\r\nX-Evil: 1"},
		{Host: "reg.example.com", Header: "Authorization", Query: "t", Value: "x"},
		{Host: "10.1.2.3", Header: "Authorization", Value: "x"},
	} {
		if _, err := NewServer(Config{Inject: []Injection{in}, CA: &ca}); err == nil {
			t.Errorf("injection %+v accepted", in)
		}
	}
	_ = url.Parse
}

// A protocol upgrade (a WebSocket, say) inside an intercepted tunnel keeps
// working after the handshake: the proxy relays it until it ends.
func TestInterceptUpgrade(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" || r.Header.Get("Authorization") != "Bearer "+testSecret {
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
	ca, _ := NewCA("t", []string{"reg.example.com"}, time.Now().Add(time.Hour))
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())
	p := startProxy(t, Config{
		Policy:        loopbackPolicy(t, fmt.Sprintf("reg.example.com:%d", upPort)),
		Resolver:      fakeResolver{"reg.example.com": lo},
		Inject:        []Injection{{Host: fmt.Sprintf("reg.example.com:%d", upPort), Header: "Authorization", Value: "Bearer " + testSecret}},
		CA:            &ca,
		UpstreamRoots: roots,
	})
	target := fmt.Sprintf("reg.example.com:%d", upPort)
	resp, conn, _ := rawConnect(t, p.proxyAddr, target, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	defer conn.Close()
	sandboxRoots := x509.NewCertPool()
	sandboxRoots.AppendCertsFromPEM([]byte(ca.Cert))
	tc := tls.Client(conn, &tls.Config{ServerName: "reg.example.com", RootCAs: sandboxRoots})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(tc, "GET /ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", target)
	br := bufio.NewReader(tc)
	r, err := http.ReadResponse(br, nil)
	if err != nil || r.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", r, err)
	}
	fmt.Fprint(tc, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo ping\n" {
		t.Errorf("after the upgrade: %q, %v", line, err)
	}
}
