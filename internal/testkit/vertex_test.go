package testkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/google"
)

const (
	testProject      = "airlock-test"
	testVertexRegion = "us-east5"
	testVertexModel  = "claude-sonnet-4-5@20250929"
)

func vertexURL(base, project, region, rest string) string {
	return base + "/v1/projects/" + project + "/locations/" + region + "/publishers/anthropic/models/" + rest
}

func vertexBody(toolResults int) []byte {
	var m map[string]any
	_ = json.Unmarshal(mainBody(toolResults), &m)
	m["anthropic_version"] = "vertex-2023-10-16"
	m["stream"] = true
	b, _ := json.Marshal(m)
	return b
}

func vertexPost(t *testing.T, url, token string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, out
}

// With a token the real oauth2 library got from GoogleTokenServer, the
// server answers the Messages stream, rawPredict and count-tokens.
func TestVertexServesWithADCToken(t *testing.T) {
	ts := startTokenServer(t, time.Hour)
	path, err := ts.AuthorizedUserFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	creds, err := google.CredentialsFromJSON(context.Background(), data, cloudPlatform)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := creds.TokenSource.Token()
	if err != nil {
		t.Fatal(err)
	}
	srv := NewVertexServer(DemoScript(), VertexOptions{Project: testProject, Region: testVertexRegion, Token: ts.Valid})
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	resp, out := vertexPost(t, vertexURL(base, testProject, testVertexRegion, testVertexModel+":streamRawPredict"), tok.AccessToken, vertexBody(2))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), out)
	}
	var events []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, e)
		}
	}
	if len(events) < 4 || events[0] != "message_start" || events[len(events)-1] != "message_stop" || !strings.Contains(string(out), `git commit`) {
		t.Errorf("stream events %v, want the script's third step:\n%s", events, out)
	}
	if !strings.Contains(string(out), `"model":"claude-sonnet-4-5-20250929"`) {
		t.Errorf("stream does not name the model claude-sonnet-4-5-20250929:\n%s", out)
	}

	body := bytes.Replace(vertexBody(0), []byte(`"stream":true`), []byte(`"stream":false`), 1)
	resp, out = vertexPost(t, vertexURL(base, testProject, testVertexRegion, testVertexModel+":rawPredict"), tok.AccessToken, body)
	var m message
	if resp.StatusCode != http.StatusOK || json.Unmarshal(out, &m) != nil || m.StopReason != "tool_use" {
		t.Errorf("rawPredict: %d %s", resp.StatusCode, out)
	}
	resp, out = vertexPost(t, vertexURL(base, testProject, testVertexRegion, "count-tokens:rawPredict"), tok.AccessToken, vertexBody(0))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"input_tokens"`) {
		t.Errorf("count-tokens: %d %s", resp.StatusCode, out)
	}
	if r := srv.Rejections(); len(r) != 0 {
		t.Errorf("rejected: %+v", r)
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("recorded %d requests, want 3", n)
	}
	if s := srv.Sent(); len(s) != 2 || s[0].Model != "claude-sonnet-4-5-20250929" || s[0].InputTokens == 0 {
		t.Errorf("sent %+v", s)
	}
}

func TestVertexRefuses(t *testing.T) {
	ts := startTokenServer(t, time.Second)
	path, err := ts.AuthorizedUserFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	creds, err := google.CredentialsFromJSON(context.Background(), data, cloudPlatform)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := creds.TokenSource.Token()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	valid, err := creds.TokenSource.Token()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name            string
		token           string
		project, region string
		status          int
		code            string
	}{
		{"no token", "", testProject, testVertexRegion, 401, "UNAUTHENTICATED"},
		{"unknown token", "ya29.forged", testProject, testVertexRegion, 401, "UNAUTHENTICATED"},
		{"expired token", expired.AccessToken, testProject, testVertexRegion, 401, "UNAUTHENTICATED"},
		{"another project", valid.AccessToken, "someone-else", testVertexRegion, 403, "PERMISSION_DENIED"},
		{"another region", valid.AccessToken, testProject, "europe-west1", 404, "NOT_FOUND"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := NewVertexServer(DemoScript(), VertexOptions{Project: testProject, Region: testVertexRegion, Token: ts.Valid})
			base, err := srv.Start("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			resp, out := vertexPost(t, vertexURL(base, tc.project, tc.region, testVertexModel+":streamRawPredict"), tc.token, vertexBody(0))
			var e struct {
				Error struct {
					Code    int
					Message string
					Status  string
				}
			}
			if resp.StatusCode != tc.status || json.Unmarshal(out, &e) != nil || e.Error.Code != tc.status || e.Error.Status != tc.code || e.Error.Message == "" {
				t.Fatalf("answer %d %s, want %d %s in Google's error shape", resp.StatusCode, out, tc.status, tc.code)
			}
			if r := srv.Rejections(); len(r) != 1 || r[0].Code != tc.code {
				t.Errorf("rejections %+v", r)
			}
			if n := len(srv.Requests()); n != 0 {
				t.Errorf("refused request recorded as served")
			}
		})
	}
}
