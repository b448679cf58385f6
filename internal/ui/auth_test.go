package ui

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"

	"github.com/airlock-dev/airlock/internal/store"
)

// fixedBackend answers with fixed data: these tests are about the guards
// in front of the handlers; the real backend (internal/cli) is proven end
// to end in internal/e2e/ui_test.go.
type fixedBackend struct{}

const markup = `<img src=x onerror=alert(1)><script>alert(1)</script>`

func (fixedBackend) Project() string { return "/repo" }
func (fixedBackend) Runs(context.Context, bool) ([]*store.Run, error) {
	return []*store.Run{{ID: "r1", Name: markup, Status: store.StatusSucceeded}}, nil
}
func (fixedBackend) Run(_ context.Context, id string) (*store.Run, error) {
	if id != "r1" {
		return nil, store.ErrNotFound
	}
	return &store.Run{ID: "r1", Status: store.StatusRunning}, nil
}
func (fixedBackend) Summary(context.Context, string) (string, error) { return markup, nil }
func (fixedBackend) Commits(context.Context, string, bool) ([]Commit, error) {
	return []Commit{{SHA: "abc", Subject: markup}}, nil
}
func (fixedBackend) Diff(context.Context, string) (*Diff, error) { return &Diff{}, nil }
func (fixedBackend) Egress(context.Context, string) ([]EgressRecord, error) {
	return nil, nil
}

// Transcript has one entry per 10 bytes, up to 30.
func (fixedBackend) Transcript(_ context.Context, _ string, from int64) (*Transcript, error) {
	if from >= 30 {
		return &Transcript{Next: from}, nil
	}
	return &Transcript{Next: from + 10, Entries: []Entry{{Kind: "assistant", Text: "at " + string(rune('0'+from/10))}}}, nil
}
func (fixedBackend) Action(_ context.Context, _ string, a Action) (*ActionResult, error) {
	if a.Name == "merge" && !a.Squash {
		return nil, errors.New("cannot merge run r1: the CLI's own words")
	}
	return &ActionResult{Message: "done " + a.Name}, nil
}
func (fixedBackend) StartRun(context.Context, NewRun) (string, error) { return "r2", nil }
func (fixedBackend) NewChoices(context.Context) (*NewChoices, error) {
	return &NewChoices{}, nil
}

// Terminal echoes what it is sent.
func (fixedBackend) Terminal(context.Context, string, int, int) (io.ReadWriteCloser, func(int, int), error) {
	r, w := io.Pipe()
	return struct {
		io.Reader
		io.Writer
		io.Closer
	}{r, w, w}, func(int, int) {}, nil
}

type testServer struct {
	*Server
	base   string
	cookie *http.Cookie
}

// builtUI is a front-end as make web leaves it.
var builtUI = fstest.MapFS{
	"index.html": {Data: []byte("<!doctype html><title>airlock</title>")},
	"app.js":     {Data: []byte("console.log(1)")},
	".gitkeep":   {},
}

func startServer(t *testing.T) *testServer { return startServerWith(t, builtUI) }

func startServerWith(t *testing.T, dist fs.FS) *testServer {
	t.Helper()
	secret, err := LoadSecret(filepath.Join(t.TempDir(), "session"), false)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(Options{Addr: "127.0.0.1:0", Token: tok, Secret: secret, Backend: fixedBackend{},
		Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.dist = dist
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &testServer{Server: s, base: s.Base(), cookie: &http.Cookie{Name: CookieName, Value: s.cookieValue()}}
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestGuards(t *testing.T) {
	s := startServer(t)
	host := strings.TrimPrefix(s.base, "http://")
	port := host[strings.LastIndex(host, ":"):]
	json := "application/json"
	tests := []struct {
		name    string
		method  string
		path    string
		cookie  string // "" none, "good", or a value
		host    string
		origin  string
		ctype   string
		csrf    string // "good" for the right one
		body    string
		want    int
		wantIn  string // in the body
		wantLoc string
	}{
		{name: "api without cookie", method: "GET", path: "/api/runs", want: 401, wantIn: `"error"`},
		{name: "page without cookie", method: "GET", path: "/", want: 401, wantIn: "airlock ui"},
		{name: "bad cookie", method: "GET", path: "/api/runs", cookie: "bm90IGl0", want: 401},
		{name: "token in the query of an API call", method: "GET", path: "/api/runs?token=TOKEN", want: 401},
		{name: "token exchange", method: "GET", path: "/runs/r1?token=TOKEN", want: 303, wantLoc: "/runs/r1"},
		{name: "wrong token", method: "GET", path: "/?token=nottheone0000000000000", want: 401, wantIn: "no longer valid"},
		{name: "good cookie", method: "GET", path: "/api/runs", cookie: "good", want: 200, wantIn: `"id":"r1"`},
		{name: "localhost name", method: "GET", path: "/api/runs", cookie: "good", host: "localhost" + port, want: 200},
		{name: "foreign Host (DNS rebinding)", method: "GET", path: "/api/runs", cookie: "good", host: "evil.example" + port, want: 403},
		{name: "foreign Host with the token", method: "GET", path: "/?token=TOKEN", host: "evil.example" + port, want: 403},
		{name: "own host, other port", method: "GET", path: "/api/runs", cookie: "good", host: "127.0.0.1:1", want: 403},
		{name: "same Origin", method: "GET", path: "/api/runs", cookie: "good", origin: "SELF", want: 200},
		{name: "foreign Origin", method: "GET", path: "/api/runs", cookie: "good", origin: "http://evil.example", want: 403},
		{name: "null Origin", method: "GET", path: "/api/runs", cookie: "good", origin: "null", want: 403},
		{name: "https Origin for http", method: "GET", path: "/api/runs", cookie: "good", origin: "https://" + host, want: 403},
		{name: "POST without CSRF", method: "POST", path: "/api/runs/r1/stop", cookie: "good", ctype: json, body: "{}", want: 403},
		{name: "POST with a wrong CSRF", method: "POST", path: "/api/runs/r1/stop", cookie: "good", ctype: json, csrf: "00", body: "{}", want: 403},
		{name: "POST as a form", method: "POST", path: "/api/runs/r1/stop", cookie: "good", ctype: "application/x-www-form-urlencoded", csrf: "good", body: "{}", want: 415},
		{name: "POST as text/plain", method: "POST", path: "/api/runs/r1/stop", cookie: "good", ctype: "text/plain", csrf: "good", body: "{}", want: 415},
		{name: "POST without cookie", method: "POST", path: "/api/runs/r1/stop", ctype: json, csrf: "good", body: "{}", want: 401},
		{name: "POST cross-site", method: "POST", path: "/api/runs/r1/stop", cookie: "good", origin: "http://evil.example", ctype: json, csrf: "good", body: "{}", want: 403},
		{name: "POST", method: "POST", path: "/api/runs/r1/stop", cookie: "good", origin: "SELF", ctype: json, csrf: "good", body: "{}", want: 200, wantIn: "done stop"},
		{name: "POST unknown field", method: "POST", path: "/api/runs/r1/merge", cookie: "good", ctype: json, csrf: "good", body: `{"squash":true,"x":1}`, want: 400},
		{name: "CLI error", method: "POST", path: "/api/runs/r1/merge", cookie: "good", ctype: json, csrf: "good", body: `{}`, want: 409, wantIn: "the CLI's own words"},
		{name: "unknown action", method: "POST", path: "/api/runs/r1/explode", cookie: "good", ctype: json, csrf: "good", body: `{}`, want: 404},
		{name: "unknown run", method: "GET", path: "/api/runs/r9", cookie: "good", want: 404},
		{name: "bad run ID", method: "GET", path: "/api/runs/..%2f..%2fetc", cookie: "good", want: 404},
		{name: "preflight", method: "OPTIONS", path: "/api/runs", cookie: "good", origin: "SELF", want: 405},
		{name: "PUT", method: "PUT", path: "/api/runs", cookie: "good", ctype: json, csrf: "good", want: 405},
		{name: "page", method: "GET", path: "/runs/r1/terminal", cookie: "good", want: 200, wantIn: "<title>airlock"},
		{name: "asset", method: "GET", path: "/assets/app.js", cookie: "good", want: 200, wantIn: "console.log"},
		{name: "asset without cookie", method: "GET", path: "/assets/app.js", want: 401},
		{name: "dot file", method: "GET", path: "/assets/.gitkeep", cookie: "good", want: 404},
		{name: "no such page", method: "GET", path: "/etc/passwd", cookie: "good", want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, s.base+strings.ReplaceAll(tt.path, "TOKEN", s.opts.Token), strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tt.cookie {
			case "":
			case "good":
				req.AddCookie(s.cookie)
			default:
				req.AddCookie(&http.Cookie{Name: CookieName, Value: tt.cookie})
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			switch tt.origin {
			case "":
			case "SELF":
				req.Header.Set("Origin", s.base)
			default:
				req.Header.Set("Origin", tt.origin)
			}
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			switch tt.csrf {
			case "":
			case "good":
				req.Header.Set(CSRFHeader, s.csrf())
			default:
				req.Header.Set(CSRFHeader, tt.csrf)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: status %d, want %d\n%s", tt.method, tt.path, resp.StatusCode, tt.want, body)
			}
			if tt.wantIn != "" && !strings.Contains(string(body), tt.wantIn) {
				t.Errorf("body %q does not contain %q", body, tt.wantIn)
			}
			if tt.wantLoc != "" && resp.Header.Get("Location") != tt.wantLoc {
				t.Errorf("Location %q, want %q", resp.Header.Get("Location"), tt.wantLoc)
			}
			h := resp.Header
			if h.Get("Content-Security-Policy") != csp || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
				t.Errorf("security headers missing: %v", h)
			}
			for k := range h {
				if strings.HasPrefix(k, "Access-Control-") {
					t.Errorf("CORS header %s sent", k)
				}
			}
			if strings.HasPrefix(tt.path, "/api/") && h.Get("Cache-Control") != "no-store" {
				t.Errorf("API answer without Cache-Control: no-store")
			}
			if tt.want == 303 {
				c := resp.Cookies()
				if len(c) != 1 || c[0].Name != CookieName || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode || c[0].Path != "/" || c[0].Value != s.cookie.Value {
					t.Errorf("session cookie %+v", c)
				}
				if strings.Contains(h.Get("Set-Cookie"), s.opts.Token) {
					t.Errorf("the token leaked into the cookie")
				}
			}
		})
	}
}

// TestMarkupStaysData: a sandbox's strings come back as JSON with <, > and
// & escaped, labelled as JSON and not to be sniffed.
func TestMarkupStaysData(t *testing.T) {
	s := startServer(t)
	for _, path := range []string{"/api/runs", "/api/runs/r1"} {
		req, _ := http.NewRequest("GET", s.base+path, nil)
		req.AddCookie(s.cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", path, ct)
		}
		if strings.ContainsAny(string(body), "<>") {
			t.Errorf("%s: raw markup in the answer: %s", path, body)
		}
		if !strings.Contains(string(body), `\u003cscript\u003ealert(1)\u003c/script\u003e`) {
			t.Errorf("%s: the markup is not there, escaped: %s", path, body)
		}
	}
}

func TestWebSocketGuards(t *testing.T) {
	s := startServer(t)
	wsURL := "ws" + strings.TrimPrefix(s.base, "http") + "/api/runs/r1/terminal?cols=80&rows=24"
	dial := func(origin string, cookie bool) (*websocket.Conn, *http.Response, error) {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		if cookie {
			h.Set("Cookie", s.cookie.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: h})
	}
	for _, tt := range []struct {
		name   string
		origin string
		cookie bool
		want   int
	}{
		{"without the cookie", s.base, false, 401},
		{"foreign Origin", "http://evil.example", true, 403},
		{"no Origin", "", true, 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, resp, err := dial(tt.origin, tt.cookie)
			if err == nil {
				c.CloseNow()
				t.Fatal("the WebSocket was accepted")
			}
			if resp == nil || resp.StatusCode != tt.want {
				t.Fatalf("refused with %v (%v), want status %d", resp, err, tt.want)
			}
		})
	}
	t.Run("signed in", func(t *testing.T) {
		c, _, err := dial(s.base, true)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"resize","cols":100,"rows":30}`)); err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, websocket.MessageBinary, []byte("echo hi\r")); err != nil {
			t.Fatal(err)
		}
		typ, data, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageBinary || string(data) != "echo hi\r" {
			t.Fatalf("read %v %q %v, want the echo", typ, data, err)
		}
	})
}

// TestStreamResumes: a run's stream starts at Last-Event-ID, the offset
// the browser had, and each event carries the offset to resume from.
func TestStreamResumes(t *testing.T) {
	s := startServer(t)
	req, _ := http.NewRequest("GET", s.base+"/api/runs/r1/stream", nil)
	req.AddCookie(s.cookie)
	req.Header.Set("Last-Event-ID", "10")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	var got []string
	for sc.Scan() && len(got) < 4 {
		l := sc.Text()
		if strings.HasPrefix(l, "event: ") || strings.HasPrefix(l, "id: ") {
			got = append(got, l)
		}
	}
	want := []string{"event: run", "event: transcript", "id: 20", "event: transcript"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("stream %q, want %q", got, want)
	}
}

func TestSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ui", "session")
	a, err := LoadSecret(path, false)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file %v %v, want mode 0600", fi, err)
	}
	b, err := LoadSecret(path, false)
	if err != nil || string(a) != string(b) {
		t.Fatalf("the secret changed across starts (%v)", err)
	}
	c, err := LoadSecret(path, true)
	if err != nil || string(c) == string(a) {
		t.Fatalf("--new-session kept the secret (%v)", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(path, false); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a secret readable by others was used: %v", err)
	}
}

func TestURL(t *testing.T) {
	s := startServer(t)
	u, err := url.Parse(s.URL("/"))
	if err != nil || u.Query().Get("token") != s.opts.Token || u.Scheme != "http" {
		t.Fatalf("URL %s", s.URL("/"))
	}
}

func TestNotBuilt(t *testing.T) {
	s := startServerWith(t, fstest.MapFS{".gitkeep": {}})
	for _, path := range []string{"/", "/assets/app.js"} {
		req, _ := http.NewRequest("GET", s.base+path, nil)
		req.AddCookie(s.cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(string(body), "run make web") {
			t.Errorf("%s without a built UI: %d %s", path, resp.StatusCode, body)
		}
	}
}

// TestRestart: a browser signed in stays signed in when the server starts
// again (the secret is kept), while the URL printed by the first start no
// longer signs anyone in.
func TestRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session")
	start := func() (*Server, func()) {
		secret, err := LoadSecret(path, false)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := NewToken()
		s, err := Listen(Options{Addr: "127.0.0.1:0", Token: tok, Secret: secret, Backend: fixedBackend{}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.Serve(ctx); close(done) }()
		return s, func() { cancel(); <-done }
	}
	first, stop := start()
	resp, err := noRedirect.Get(first.URL("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	oldURL := first.URL("/")
	stop()

	second, stop := start()
	defer stop()
	req, _ := http.NewRequest("GET", second.Base()+"/api/runs", nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the first start's cookie after a restart: %d, want 200", resp.StatusCode)
	}
	u, _ := url.Parse(oldURL)
	resp, err = noRedirect.Get(second.Base() + "/?" + u.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("the first start's URL after a restart: %d, want 401", resp.StatusCode)
	}
}

// TestTLS: --allow-remote's certificate is made once, kept 0600 and
// served; the session cookie is then Secure.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cfg, fp, err := LoadCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, fp2, err := LoadCert(dir)
	if err != nil || fp2 != fp || len(fp) != 95 {
		t.Fatalf("fingerprint %q then %q (%v): want the same kept certificate", fp, fp2, err)
	}
	for _, f := range []string{"cert.pem", "key.pem"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	secret, _ := LoadSecret(filepath.Join(dir, "session"), false)
	tok, _ := NewToken()
	s, err := Listen(Options{Addr: "127.0.0.1:0", TLS: cfg, Token: tok, Secret: secret, Backend: fixedBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if !strings.HasPrefix(s.URL("/"), "https://") {
		t.Fatalf("URL %s", s.URL("/"))
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: noRedirect.CheckRedirect,
	}
	resp, err := client.Get(s.URL("/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sum := sha256.Sum256(resp.TLS.PeerCertificates[0].Raw)
	if got := strings.ToUpper(hex.EncodeToString(sum[:])); got != strings.ReplaceAll(fp, ":", "") {
		t.Errorf("served certificate %s, printed fingerprint %s", got, fp)
	}
	if c := resp.Cookies(); len(c) != 1 || !c[0].Secure {
		t.Errorf("cookie over TLS %+v, want Secure", c)
	}
	if resp, err := http.Get(strings.Replace(s.URL("/"), "https", "http", 1)); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) > 0 {
			t.Errorf("plain HTTP on the TLS port: %d %v", resp.StatusCode, resp.Cookies())
		}
	}
}
