package egress

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/budget"
)

func TestChatUsage(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		wantModel string
		want      budget.Usage
		wantOK    bool
	}{
		{
			name:      "the usage chunk of a stream",
			data:      `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4.1-2025-04-14","choices":[],"usage":{"prompt_tokens":8529,"completion_tokens":33,"total_tokens":8562,"prompt_tokens_details":{"cached_tokens":8448},"completion_tokens_details":{"reasoning_tokens":0}}}`,
			wantModel: "gpt-4.1-2025-04-14",
			want:      budget.Usage{Input: 81, Output: 33, CacheRead: 8448},
			wantOK:    true,
		},
		{
			name:      "a whole JSON response",
			data:      `{"id":"c","object":"chat.completion","model":"gpt-4.1-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`,
			wantModel: "gpt-4.1-mini",
			want:      budget.Usage{Input: 12, Output: 3},
			wantOK:    true,
		},
		{
			name: "a content chunk with usage null",
			data: `{"id":"c","object":"chat.completion.chunk","model":"gpt-4.1","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}`,
		},
		{
			name: "a content chunk quoting the usage keys",
			data: `{"id":"c","model":"gpt-4.1","choices":[{"index":0,"delta":{"content":"\"prompt_tokens\": 5"}}]}`,
		},
		{name: "the end of the stream", data: `[DONE]`},
		{name: "not JSON", data: `{"usage":{"prompt_tokens":`},
		{
			name:      "negative and oversized counts are clamped",
			data:      `{"model":"gpt-4.1","usage":{"prompt_tokens":100,"completion_tokens":-5,"prompt_tokens_details":{"cached_tokens":500}}}`,
			wantModel: "gpt-4.1",
			want:      budget.Usage{Input: 0, Output: 0, CacheRead: 100},
			wantOK:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, u, ok := chatUsage([]byte(tt.data))
			if model != tt.wantModel || u != tt.want || ok != tt.wantOK {
				t.Errorf("chatUsage = %q, %+v, %v; want %q, %+v, %v", model, u, ok, tt.wantModel, tt.want, tt.wantOK)
			}
		})
	}
}

func TestChatRequestWithUsage(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    string // the body sent on, compared as JSON
		wantErr bool
	}{
		{
			name: "a stream without stream_options gets them",
			body: `{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"<b>&</b>"}]}`,
			want: `{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"<b>&</b>"}]}`,
		},
		{
			name: "an agent turning usage off is overruled, other options kept",
			body: `{"stream":true,"stream_options":{"include_usage":false,"other":1}}`,
			want: `{"stream":true,"stream_options":{"include_usage":true,"other":1}}`,
		},
		{
			name: "stream_options null",
			body: `{"stream":true,"stream_options":null}`,
			want: `{"stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "duplicate keys: the last one, as the proxy read it",
			body: `{"stream":false,"stream":true}`,
			want: `{"stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "a request that does not stream is left alone",
			body: `{"model":"gpt-4.1","messages":[]}`,
			want: `{"model":"gpt-4.1","messages":[]}`,
		},
		{name: "not JSON", body: `{"stream":true`, wantErr: true},
		{name: "not an object", body: `[1,2]`, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "stream of the wrong type", body: `{"stream":"yes"}`, wantErr: true},
		{name: "stream_options of the wrong type", body: `{"stream":true,"stream_options":[true]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chatRequestWithUsage([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, errChatBody) {
					t.Fatalf("err = %v, want errChatBody (body out: %s)", err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(got), `\u003c`) {
				t.Errorf("body was HTML-escaped: %s", got)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("output %s: %v", got, err)
			}
			_ = json.Unmarshal([]byte(tt.want), &w)
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			if string(gj) != string(wj) {
				t.Errorf("got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// A streamed response as the API sends it, cut into pieces at awkward
// places, is metered once: the usage chunk's counts at the model's price.
func TestChatCompletionsMeteredStream(t *testing.T) {
	stream := "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n" +
		"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4.1-2025-04-14\",\"choices\":[],\"usage\":{\"prompt_tokens\":3000,\"completion_tokens\":500,\"total_tokens\":3500,\"prompt_tokens_details\":{\"cached_tokens\":2048}}}\n\n" +
		"data: [DONE]\n\n"
	for _, size := range []int{1, 7, 64, len(stream)} {
		mt := newMeter("", Budget{}, time.Now)
		body := mt.meterBody(io.NopCloser(&chunkReader{data: []byte(stream), size: size}), "text/event-stream", chatCompletionsUsage, "")
		if got, err := io.ReadAll(body); err != nil || string(got) != stream {
			t.Fatalf("the stream was changed: %v", err)
		}
		body.Close()
		m := mt.snapshot()
		if m.InputTokens != 952 || m.CacheReadInputTokens != 2048 || m.OutputTokens != 500 {
			t.Errorf("pieces of %d: meter = %+v", size, m)
		}
		want := budget.PriceOf("gpt-4.1").Cost(budget.Usage{Input: 952, Output: 500, CacheRead: 2048})
		if m.CostUSD != want || want <= 0 {
			t.Errorf("pieces of %d: cost = %v, want %v", size, m.CostUSD, want)
		}
	}

	mt := newMeter("", Budget{}, time.Now)
	body := mt.meterBody(io.NopCloser(strings.NewReader(`{"object":"chat.completion","model":"gpt-4.1-mini","usage":{"prompt_tokens":10,"completion_tokens":2}}`)), "application/json", chatCompletionsUsage, "")
	io.ReadAll(body)
	body.Close()
	if m := mt.snapshot(); m.InputTokens != 10 || m.OutputTokens != 2 || m.CostUSD <= 0 {
		t.Errorf("JSON response: meter = %+v", m)
	}
}

// chunkReader hands out data size bytes at a time.
type chunkReader struct {
	data []byte
	size int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(c.size, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// Through the proxy: whatever the agent asks, a streamed chat completion
// reaches the API asking for its usage, and the meter counts it; a body
// the proxy cannot meter is refused before it reaches the API.
func TestChatCompletionsThroughProxy(t *testing.T) {
	var mu sync.Mutex
	var seen []map[string]any
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &req)
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n")
		if opts, _ := req["stream_options"].(map[string]any); opts["include_usage"] == true {
			io.WriteString(w, "data: {\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4.1\",\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":100}}\n\n")
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL + "/v1")
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	p := startProxy(t, Config{MeterFile: meterFile, API: &APIConfig{
		Upstream: u,
		Headers:  map[string]string{"Authorization": "Bearer sk-real"},
		Routes:   []APIRoute{{Method: "POST", Path: "/chat/completions", Metered: true}},
		Usage:    "openai-chat",
	}})
	post := func(body string) (int, string) {
		resp, err := http.Post(p.apiURL+"/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	for i, body := range []string{
		`{"model":"gpt-4.1","stream":true,"messages":[]}`,
		`{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":false},"messages":[]}`,
	} {
		if code, out := post(body); code != 200 || !strings.Contains(out, "[DONE]") {
			t.Fatalf("request %d: status %d: %s", i, code, out)
		}
		p.records(t, i+1)
	}
	if code, out := post(`{"model":"gpt-4.1","stream":true,`); code != 400 || !strings.Contains(out, "not a JSON object") {
		t.Errorf("a body that is not JSON: status %d: %s", code, out)
	}
	mu.Lock()
	if len(seen) != 2 {
		t.Errorf("the API saw %d requests, want 2 (the unmeterable one refused)", len(seen))
	}
	mu.Unlock()
	m, err := ReadMeter(meterFile)
	if err != nil {
		t.Fatal(err)
	}
	if m.ModelRequests != 2 || m.InputTokens != 2000 || m.OutputTokens != 200 || m.CostUSD <= 0 {
		t.Errorf("meter = %+v, want both responses' usage", m)
	}
}
