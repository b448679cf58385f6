package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"sync"

	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// These tests drive the real Claude Code CLI through the Bedrock and
// Vertex servers. Its AWS and Google SDKs would reach for real endpoints
// (instance metadata, token URLs) given the chance, so each test re-runs
// itself in a private network namespace holding only loopback.

const netnsEnv = "AIRLOCK_TESTKIT_NETNS"

// inPrivateNetwork reports whether the test is running in its own network
// namespace. When it is not, it runs the test again in one and reports
// false: the caller returns, and the outcome is the inner run's.
func inPrivateNetwork(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == "1" {
		return true
	}
	requireClaude(t)
	unshare, err := exec.LookPath("unshare")
	if err == nil {
		args := []string{"--net"}
		if os.Geteuid() != 0 {
			args = append(args, "--map-root-user")
		}
		err = exec.Command(unshare, append(args, "true")...).Run()
	}
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("AIRLOCK_REQUIRE_CLAUDE") == "1" {
			t.Fatalf("cannot make a private network namespace (unshare --net): %v", err)
		}
		t.Skipf("cannot make a private network namespace (unshare --net): %v", err)
	}
	args := []string{"--net"}
	if os.Geteuid() != 0 {
		args = append(args, "--map-root-user")
	}
	args = append(args, "sh", "-c", `ip link set lo up && exec "$@"`, "sh",
		os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd := exec.Command(unshare, args...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("in a private network namespace:\n%s", out.String())
	if err != nil || !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("inner run failed: %v", err)
	}
	return false
}

// The real CLI signs with the AWS SDK for JavaScript; every request it
// makes must verify, and it completes the demo script.
func TestClaudeThroughBedrock(t *testing.T) {
	if !inPrivateNetwork(t) {
		return
	}
	dir := newRepo(t)
	creds := testAWSTemp
	s := NewBedrockServer(DemoScriptIn(dir), BedrockOptions{Region: testRegion, Credentials: StaticAWS(creds)})
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, stream := execClaude(t, dir, bedrockEnv(t, url, creds))
	for _, r := range s.Requests() {
		t.Logf("verified %s %s?%s signed %s", r.Method, r.Path, r.Query, signedHeaders(r.Headers.Get("Authorization")))
	}
	for _, r := range s.Rejections() {
		t.Errorf("refused %s %s: %s (%s)", r.Method, r.Path, r.Code, r.Reason)
	}
	checkDemoRun(t, dir, res, stream)
	var streamed int
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, "/invoke-with-response-stream") && r.NumTools > 0 {
			streamed++
			if !strings.Contains(r.Headers.Get("Authorization"), "Credential="+creds.AccessKeyID+"/") ||
				!strings.Contains(signedHeaders(r.Headers.Get("Authorization")), "x-amz-security-token") {
				t.Errorf("request to %s not signed with the session credentials: %s", r.Path, r.Headers.Get("Authorization"))
			}
		}
	}
	if streamed < 4 {
		t.Errorf("%d streamed main requests, want at least 4 (three tools and the final answer)", streamed)
	}
}

// A scripted failure reaches the user as Bedrock's error, without minutes
// of retries.
func TestClaudeReportsFailureThroughBedrock(t *testing.T) {
	if !inPrivateNetwork(t) {
		return
	}
	dir := newRepo(t)
	s := NewBedrockServer(FailScript(), BedrockOptions{Region: testRegion, Credentials: StaticAWS(testAWS)})
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	res, _ := execClaude(t, dir, bedrockEnv(t, url, testAWS))
	if !res.IsError || !strings.Contains(res.Result, "500") || !strings.Contains(res.Result, "scripted failure") {
		t.Errorf("result is_error=%v %q, want an error naming the 500 and its message", res.IsError, res.Result)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("failed run took %v; Claude Code should not retry", d)
	}
}

// bedrockEnv points the CLI at a Bedrock server with creds, and away from
// any AWS configuration or instance metadata on the host.
func bedrockEnv(t *testing.T, url string, creds AWSCredentials) []string {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"CLAUDE_CODE_USE_BEDROCK=1",
		"ANTHROPIC_BEDROCK_BASE_URL=" + url,
		"AWS_REGION=" + testRegion,
		"AWS_ACCESS_KEY_ID=" + creds.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + creds.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=" + empty,
		"AWS_SHARED_CREDENTIALS_FILE=" + empty,
	}
	if creds.SessionToken != "" {
		env = append(env, "AWS_SESSION_TOKEN="+creds.SessionToken)
	}
	return env
}

func signedHeaders(authz string) string {
	if a, ok := parseSigV4(authz); ok {
		return strings.Join(a.signedHeaders, ";")
	}
	return "(not SigV4: " + strings.SplitN(authz, " ", 2)[0] + ")"
}

// checkDemoRun asserts the demo script ran: hello.py written, run and
// committed, and the CLI reported success.
func checkDemoRun(t *testing.T, dir string, res claudeResult, stream string) {
	t.Helper()
	if res.Subtype != "success" || res.IsError || !strings.Contains(res.Result, "Hello from airlock") {
		t.Errorf("result %s is_error=%v: %s", res.Subtype, res.IsError, res.Result)
	}
	if !strings.Contains(stream, `"stdout":"Hello from airlock"`) {
		t.Errorf("stream shows no output of running hello.py:\n%s", stream)
	}
	if got := git(t, dir, "log", "-1", "--format=%s"); got != "Add hello.py\n" {
		t.Errorf("last commit %q, want Add hello.py", got)
	}
}

// The real CLI runs as airlock runs it, holding no Google credential
// (CLAUDE_CODE_SKIP_VERTEX_AUTH=1); a stand-in for the egress proxy adds a
// bearer token that golang.org/x/oauth2/google gets from GoogleTokenServer
// with an ADC file. Tokens live two seconds, so they are refreshed during
// the run. (The CLI's own google-auth-library ignores an ADC file's
// token_uri and always asks oauth2.googleapis.com, so it cannot be pointed
// at the token server.)
func TestClaudeThroughVertex(t *testing.T) {
	if !inPrivateNetwork(t) {
		return
	}
	dir := newRepo(t)
	ts := startTokenServer(t, 2*time.Second)
	adc, err := ts.ServiceAccountFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(adc)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := google.CredentialsFromJSON(context.Background(), data, cloudPlatform)
	if err != nil {
		t.Fatal(err)
	}
	s := NewVertexServer(DemoScriptIn(dir), VertexOptions{Project: testProject, Region: testVertexRegion, Token: ts.Valid})
	upstream, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	target, _ := neturl.Parse(upstream)
	var mu sync.Mutex
	var agentAuth []string
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			mu.Lock()
			agentAuth = append(agentAuth, pr.In.Header.Get("Authorization"))
			mu.Unlock()
			pr.SetURL(target)
			pr.Out.Header.Del("Authorization")
		},
		Transport: &oauth2.Transport{Source: creds.TokenSource, Base: http.DefaultTransport},
	}
	front := httptest.NewServer(proxy)
	defer front.Close()

	res, stream := execClaude(t, dir, []string{
		"CLAUDE_CODE_USE_VERTEX=1",
		"CLAUDE_CODE_SKIP_VERTEX_AUTH=1",
		"ANTHROPIC_VERTEX_BASE_URL=" + front.URL + "/v1",
		"CLOUD_ML_REGION=" + testVertexRegion,
		"ANTHROPIC_VERTEX_PROJECT_ID=" + testProject,
	})
	for _, r := range s.Requests() {
		t.Logf("accepted %s %s (anthropic_version %s)", r.Method, r.Path, jsonField(r.Body, "anthropic_version"))
	}
	for _, r := range s.Rejections() {
		t.Errorf("refused %s %s: %s (%s)", r.Method, r.Path, r.Code, r.Reason)
	}
	t.Logf("token server issued %d tokens, refused %v", ts.Issued(), ts.Refused())
	checkDemoRun(t, dir, res, stream)
	var streamed int
	for _, r := range s.Requests() {
		if strings.HasSuffix(r.Path, ":streamRawPredict") && r.NumTools > 0 {
			streamed++
		}
	}
	if streamed < 4 {
		t.Errorf("%d streamed main requests, want at least 4 (three tools and the final answer)", streamed)
	}
	if ts.Issued() < 2 {
		t.Errorf("token server issued %d tokens; short-lived tokens must be refreshed during the run", ts.Issued())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range agentAuth {
		if a != "" {
			t.Errorf("the CLI sent its own Authorization %q", a)
		}
	}
}

func jsonField(body []byte, key string) string {
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return fmt.Sprint(m[key])
}
