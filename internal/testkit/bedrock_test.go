package testkit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const testRegion = "eu-west-3"

var (
	testAWS     = AWSCredentials{AccessKeyID: "AKIATESTAIRLOCK00001", SecretAccessKey: "test/secret/key+airlock0000000000000000"}
	testAWSTemp = AWSCredentials{AccessKeyID: "ASIATESTAIRLOCK00002", SecretAccessKey: "temp/secret/key+airlock000000000000000", SessionToken: "IQoJb3JpZ2luX2VjEAAaCXRlc3QtdG9rZW4="}
)

// The model id Claude Code puts raw (with its ':') in the path.
const testBedrockModel = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

func startBedrock(t *testing.T, s Script, opts BedrockOptions) (*BedrockServer, string) {
	t.Helper()
	srv := NewBedrockServer(s, opts)
	url, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, url
}

// bedrockCall is one request signed by the AWS SDK's signer, with knobs to
// spoil it after signing.
type bedrockCall struct {
	method, path string
	body         []byte
	creds        AWSCredentials
	region       string
	at           time.Time
	spoil        func(*http.Request)
}

func (c bedrockCall) do(t *testing.T, base string) (*http.Response, []byte) {
	t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	if c.region == "" {
		c.region = testRegion
	}
	if c.at.IsZero() {
		c.at = time.Now()
	}
	req, err := http.NewRequest(c.method, base+c.path, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	sum := sha256.Sum256(c.body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	creds := aws.Credentials{AccessKeyID: c.creds.AccessKeyID, SecretAccessKey: c.creds.SecretAccessKey, SessionToken: c.creds.SessionToken}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hash, BedrockService, c.region, c.at); err != nil {
		t.Fatal(err)
	}
	if c.spoil != nil {
		c.spoil(req)
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

func mainBody(toolResults int) []byte {
	msgs := []any{map[string]any{"role": "user", "content": "do the task"}}
	for i := 0; i < toolResults; i++ {
		msgs = append(msgs,
			map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "tool_use", "id": "t", "name": "Bash", "input": map[string]any{}}}},
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": "t", "content": "ok"}}},
		)
	}
	b, _ := json.Marshal(map[string]any{
		"anthropic_version": "bedrock-2023-05-31",
		"max_tokens":        1000,
		"messages":          msgs,
		"tools":             []any{map[string]any{"name": "Bash", "input_schema": map[string]any{"type": "object"}}},
	})
	return b
}

func TestBedrockVerifiesSDKSignatures(t *testing.T) {
	srv, base := startBedrock(t, DemoScript(), BedrockOptions{Region: testRegion, Credentials: StaticAWS(testAWS, testAWSTemp)})
	for _, creds := range []AWSCredentials{testAWS, testAWSTemp} {
		resp, out := bedrockCall{path: "/model/" + testBedrockModel + "/invoke", body: mainBody(0), creds: creds}.do(t, base)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d %s: %s", creds.AccessKeyID, resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), out)
		}
		var m message
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("invoke answer is not a message: %v\n%s", err, out)
		}
		if m.Model != "claude-sonnet-4-5-20250929" || m.StopReason != "tool_use" || len(m.Content) == 0 || m.Content[len(m.Content)-1].Name != DemoScript().Steps[0].Tool {
			t.Errorf("invoke answered %+v, want the script's first tool call from claude-sonnet-4-5-20250929", m)
		}
	}
	resp, out := bedrockCall{method: http.MethodGet, path: "/inference-profiles?type=SYSTEM_DEFINED", creds: testAWS}.do(t, base)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"inferenceProfileSummaries"`) {
		t.Errorf("ListInferenceProfiles: %d %s", resp.StatusCode, out)
	}
	resp, out = bedrockCall{path: "/model/" + testBedrockModel + "/count-tokens", body: []byte(`{"input":{"invokeModel":{"body":"e30="}}}`), creds: testAWS}.do(t, base)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"inputTokens"`) {
		t.Errorf("CountTokens: %d %s", resp.StatusCode, out)
	}
	if rej := srv.Rejections(); len(rej) != 0 {
		t.Errorf("rejected good requests: %+v", rej)
	}
	if got := len(srv.Requests()); got != 4 {
		t.Errorf("recorded %d requests, want 4", got)
	}
	if p := srv.Requests()[0].Path; p != "/model/"+testBedrockModel+"/invoke" {
		t.Errorf("recorded path %q", p)
	}
}

func TestBedrockRefusesBadSignatures(t *testing.T) {
	path := "/model/" + testBedrockModel + "/invoke-with-response-stream"
	cases := []struct {
		name   string
		call   bedrockCall
		code   string
		reason string
	}{
		{"tampered body", bedrockCall{creds: testAWS, spoil: func(r *http.Request) {
			b := mainBody(1)
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}}, "InvalidSignatureException", "not the body's hash"},
		{"tampered body with its hash", bedrockCall{creds: testAWS, spoil: func(r *http.Request) {
			b := bytes.Replace(mainBody(0), []byte("do the task"), []byte("do evil now"), 1)
			sum := sha256.Sum256(b)
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
		}}, "InvalidSignatureException", "signature does not match"},
		{"tampered path", bedrockCall{creds: testAWS, spoil: func(r *http.Request) {
			r.URL.Path = "/model/us.anthropic.claude-opus-4-1-20250805-v1:0/invoke-with-response-stream"
		}}, "InvalidSignatureException", "signature does not match"},
		{"wrong secret", bedrockCall{creds: AWSCredentials{AccessKeyID: testAWS.AccessKeyID, SecretAccessKey: "wrong"}}, "InvalidSignatureException", "signature does not match"},
		{"unknown key id", bedrockCall{creds: AWSCredentials{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: testAWS.SecretAccessKey}}, "UnrecognizedClientException", "unknown access key id"},
		{"expired date", bedrockCall{creds: testAWS, at: time.Now().Add(-6 * time.Minute)}, "InvalidSignatureException", "more than 5 minutes"},
		{"future date", bedrockCall{creds: testAWS, at: time.Now().Add(6 * time.Minute)}, "InvalidSignatureException", "more than 5 minutes"},
		{"wrong region", bedrockCall{creds: testAWS, region: "us-east-1"}, "InvalidSignatureException", "region us-east-1"},
		{"missing session token", bedrockCall{creds: AWSCredentials{AccessKeyID: testAWSTemp.AccessKeyID, SecretAccessKey: testAWSTemp.SecretAccessKey}}, "UnrecognizedClientException", "session token missing"},
		{"wrong session token", bedrockCall{creds: AWSCredentials{AccessKeyID: testAWSTemp.AccessKeyID, SecretAccessKey: testAWSTemp.SecretAccessKey, SessionToken: "other"}}, "UnrecognizedClientException", "wrong session token"},
		{"unsigned session token", bedrockCall{creds: AWSCredentials{AccessKeyID: testAWSTemp.AccessKeyID, SecretAccessKey: testAWSTemp.SecretAccessKey}, spoil: func(r *http.Request) {
			r.Header.Set("X-Amz-Security-Token", testAWSTemp.SessionToken)
		}}, "InvalidSignatureException", "not signed"},
		{"unsigned header changed", bedrockCall{creds: testAWS, spoil: func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }}, "InvalidSignatureException", "signature does not match"},
		{"expired credentials", bedrockCall{creds: AWSCredentials{AccessKeyID: "ASIAEXPIRED", SecretAccessKey: "s", SessionToken: "t"}}, "ExpiredTokenException", "expired at"},
		{"no authorization", bedrockCall{creds: testAWS, spoil: func(r *http.Request) { r.Header.Del("Authorization") }}, "MissingAuthenticationTokenException", "no Authorization"},
		{"unknown bearer", bedrockCall{creds: testAWS, spoil: func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }}, "UnrecognizedClientException", "bearer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, base := startBedrock(t, DemoScript(), BedrockOptions{Region: testRegion, Credentials: StaticAWS(testAWS, testAWSTemp,
				AWSCredentials{AccessKeyID: "ASIAEXPIRED", SecretAccessKey: "s", SessionToken: "t", Expires: time.Now().Add(-time.Second)})})
			tc.call.path, tc.call.body = path, mainBody(0)
			resp, out := tc.call.do(t, base)
			if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Amzn-Errortype") != tc.code {
				t.Fatalf("status %d %q, want 403 %s: %s", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), tc.code, out)
			}
			var e struct{ Message string }
			if json.Unmarshal(out, &e) != nil || e.Message == "" {
				t.Errorf("body %s is not AWS's {\"message\":...}", out)
			}
			rej := srv.Rejections()
			if len(rej) != 1 || rej[0].Code != tc.code || !strings.Contains(rej[0].Reason, tc.reason) {
				t.Errorf("rejections %+v, want one %s saying %q", rej, tc.code, tc.reason)
			}
			if n := len(srv.Requests()); n != 0 {
				t.Errorf("refused request recorded as served (%d)", n)
			}
		})
	}
}

func TestBedrockAcceptsAPIKey(t *testing.T) {
	srv, base := startBedrock(t, DemoScript(), BedrockOptions{Region: testRegion, BearerToken: "ABSKtestkey"})
	req, _ := http.NewRequest(http.MethodPost, base+"/model/"+testBedrockModel+"/invoke", bytes.NewReader(mainBody(0)))
	req.Header.Set("Authorization", "Bearer ABSKtestkey")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(srv.Rejections()) != 0 {
		t.Errorf("API key refused: %d %+v", resp.StatusCode, srv.Rejections())
	}
}

// The stream is an AWS event stream of chunks, each carrying one Anthropic
// event in base64, the last with the invocation metrics.
func TestBedrockStreamsEventStreamChunks(t *testing.T) {
	srv, base := startBedrock(t, DemoScript(), BedrockOptions{Region: testRegion, Credentials: StaticAWS(testAWS)})
	resp, out := bedrockCall{path: "/model/" + testBedrockModel + "/invoke-with-response-stream", body: mainBody(1), creds: testAWS}.do(t, base)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/vnd.amazon.eventstream" {
		t.Fatalf("status %d content type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), out)
	}
	dec := eventstream.NewDecoder()
	r := bytes.NewReader(out)
	var types []string
	var last map[string]any
	var partial strings.Builder
	for r.Len() > 0 {
		msg, err := dec.Decode(r, nil)
		if err != nil {
			t.Fatalf("frame %d: %v", len(types), err)
		}
		for _, h := range []struct{ k, v string }{{":event-type", "chunk"}, {":content-type", "application/json"}, {":message-type", "event"}} {
			if v := msg.Headers.Get(h.k); v == nil || v.String() != h.v {
				t.Errorf("frame %d header %s = %v, want %s", len(types), h.k, v, h.v)
			}
		}
		var chunk struct{ Bytes string }
		if err := json.Unmarshal(msg.Payload, &chunk); err != nil {
			t.Fatalf("chunk payload %s: %v", msg.Payload, err)
		}
		raw, err := base64.StdEncoding.DecodeString(chunk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var ev map[string]any
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		types = append(types, ev["type"].(string))
		if d, ok := ev["delta"].(map[string]any); ok && d["type"] == "input_json_delta" {
			partial.WriteString(d["partial_json"].(string))
		}
		last = ev
	}
	if types[0] != "message_start" || types[len(types)-1] != "message_stop" {
		t.Errorf("event types %v", types)
	}
	if !strings.Contains(partial.String(), "python3 hello.py") {
		t.Errorf("tool input %q is not the script's second step", partial.String())
	}
	metrics, ok := last["amazon-bedrock-invocationMetrics"].(map[string]any)
	sent := srv.Sent()
	if !ok || len(sent) != 1 || metrics["inputTokenCount"] != float64(sent[0].InputTokens) || metrics["outputTokenCount"] != float64(sent[0].OutputTokens) {
		t.Errorf("message_stop metrics %v, sent %+v", last, sent)
	}
}

func TestBedrockModelName(t *testing.T) {
	for id, want := range map[string]string{
		"us.anthropic.claude-sonnet-4-5-20250929-v1:0": "claude-sonnet-4-5-20250929",
		"anthropic.claude-3-5-haiku-20241022-v1:0":     "claude-3-5-haiku-20241022",
		"global.anthropic.claude-opus-4-1-20250805-v1": "claude-opus-4-1-20250805",
		"us.anthropic.claude-opus-5-5":                 "claude-opus-5-5",
		"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0": "claude-sonnet-4-5-20250929",
		"amazon.nova-pro-v1:0": DefaultModel,
	} {
		if got := bedrockModelName(id); got != want {
			t.Errorf("bedrockModelName(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestBedrockScriptedFailure(t *testing.T) {
	_, base := startBedrock(t, FailScript(), BedrockOptions{Region: testRegion, Credentials: StaticAWS(testAWS)})
	resp, out := bedrockCall{path: "/model/" + testBedrockModel + "/invoke-with-response-stream", body: mainBody(0), creds: testAWS}.do(t, base)
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("X-Amzn-Errortype") != "InternalServerException" ||
		resp.Header.Get("X-Should-Retry") != "false" || !strings.Contains(string(out), "scripted failure") {
		t.Errorf("answer %d %v: %s", resp.StatusCode, resp.Header, out)
	}
}
