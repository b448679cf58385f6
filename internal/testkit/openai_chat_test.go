package testkit

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// chatStream is what a client assembles from a streamed answer.
type chatStream struct {
	Text, Tool, CallID, Args, Finish string
	Done                             bool
	UsageChunks                      int
}

func postChat(t *testing.T, url string, body map[string]any) *http.Response {
	t.Helper()
	enc, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(string(enc)))
	req.Header.Set("Authorization", "Bearer sk-test")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readChatStream(t *testing.T, r io.Reader) (chatStream, map[string]any) {
	t.Helper()
	var out chatStream
	var usage map[string]any
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not an SSE data line", line)
		}
		if data == "[DONE]" {
			out.Done = true
			continue
		}
		var ch struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta struct {
					Content   string `json:"content"`
					ToolCalls []struct {
						Index    int    `json:"index"`
						ID       string `json:"id"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage map[string]any `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		if ch.Object != "chat.completion.chunk" {
			t.Errorf("chunk object = %q", ch.Object)
		}
		if ch.Usage != nil {
			usage = ch.Usage
			out.UsageChunks++
		}
		for _, c := range ch.Choices {
			out.Text += c.Delta.Content
			for _, tc := range c.Delta.ToolCalls {
				if tc.ID != "" {
					out.CallID = tc.ID
				}
				out.Tool += tc.Function.Name
				out.Args += tc.Function.Arguments
			}
			if c.FinishReason != nil {
				out.Finish = *c.FinishReason
			}
		}
	}
	return out, usage
}

func TestChatServerStreams(t *testing.T) {
	script := Script{
		Steps: []Step{
			{Text: "Running.", Tool: "bash", Input: map[string]any{"command": "echo hi"}},
		},
		FinalText: "All done.",
	}
	tools := []any{map[string]any{"type": "function", "function": map[string]any{"name": "bash"}}}
	tests := []struct {
		name         string
		body         map[string]any
		want         chatStream
		includeUsage bool
	}{
		{
			name: "first step is the tool call",
			body: map[string]any{"model": "gpt-4.1", "stream": true, "tools": tools,
				"stream_options": map[string]any{"include_usage": true},
				"messages":       []any{map[string]any{"role": "user", "content": "go"}}},
			want:         chatStream{Text: "Running.", Tool: "bash", Args: `{"command":"echo hi"}`, Finish: "tool_calls", Done: true, UsageChunks: 1},
			includeUsage: true,
		},
		{
			name: "a tool result advances to the final text",
			body: map[string]any{"model": "gpt-4.1", "stream": true, "tools": tools,
				"messages": []any{
					map[string]any{"role": "user", "content": "go"},
					map[string]any{"role": "assistant", "tool_calls": []any{}},
					map[string]any{"role": "tool", "tool_call_id": "x", "content": "hi"},
				}},
			want: chatStream{Text: "All done.", Finish: "stop", Done: true},
		},
		{
			name: "a request without tools is a side request",
			body: map[string]any{"model": "gpt-4.1", "stream": true,
				"messages": []any{map[string]any{"role": "user", "content": "title?"}}},
			want: chatStream{Text: "Scripted airlock run", Finish: "stop", Done: true},
		},
	}
	srv := NewChatServer(script)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := postChat(t, ts.URL, tt.body)
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
				t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
			}
			got, usage := readChatStream(t, resp.Body)
			got.CallID = ""
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			if tt.includeUsage {
				if usage["prompt_tokens"].(float64) <= 0 || usage["completion_tokens"].(float64) <= 0 {
					t.Errorf("usage = %v", usage)
				}
			}
		})
	}
	if n := len(srv.Requests()); n != len(tests) {
		t.Errorf("recorded %d requests, want %d", n, len(tests))
	}
	if k := srv.Requests()[0].APIKey(); k != "sk-test" {
		t.Errorf("recorded key %q", k)
	}
}

func TestChatServerCachesThePreviousPrompt(t *testing.T) {
	srv := NewChatServer(Script{Steps: []Step{{Tool: "bash"}, {Tool: "bash"}}})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	big := strings.Repeat("x", 8000) // ~2000 tokens
	tools := []any{map[string]any{"type": "function"}}
	msgs := []any{map[string]any{"role": "user", "content": big}}
	var cached []float64
	for i := 0; i < 2; i++ {
		resp := postChat(t, ts.URL, map[string]any{"stream": true, "tools": tools, "messages": msgs,
			"stream_options": map[string]any{"include_usage": true}})
		_, usage := readChatStream(t, resp.Body)
		resp.Body.Close()
		details, _ := usage["prompt_tokens_details"].(map[string]any)
		c, _ := details["cached_tokens"].(float64)
		if c > usage["prompt_tokens"].(float64) {
			t.Errorf("cached %v > prompt %v", c, usage["prompt_tokens"])
		}
		cached = append(cached, c)
		msgs = append(msgs, map[string]any{"role": "tool", "content": "ok"})
	}
	if cached[0] != 0 || cached[1] < 1024 || int(cached[1])%128 != 0 {
		t.Errorf("cached tokens = %v, want 0 then a multiple of 128 of at least 1024", cached)
	}
}

func TestChatServerJSONAndErrors(t *testing.T) {
	srv := NewChatServer(Script{FinalText: "Hi."})
	ts := httptest.NewServer(srv)
	defer ts.Close()

	resp := postChat(t, ts.URL, map[string]any{"model": "gpt-4.1-mini", "messages": []any{}, "tools": []any{map[string]any{}}})
	var c struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message      struct{ Content string } `json:"message"`
			FinishReason string                   `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c.Object != "chat.completion" || c.Model != "gpt-4.1-mini" || len(c.Choices) != 1 ||
		c.Choices[0].Message.Content != "Hi." || c.Choices[0].FinishReason != "stop" || c.Usage.PromptTokens == 0 {
		t.Errorf("non-streaming answer = %+v", c)
	}

	fail := NewChatServer(Script{Fail: &Failure{Status: 429, Type: "rate_limit_error", Message: "slow down"}})
	ts2 := httptest.NewServer(fail)
	defer ts2.Close()
	resp = postChat(t, ts2.URL, map[string]any{"stream": true, "tools": []any{map[string]any{}}})
	var e struct {
		Error struct{ Message, Type string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 429 || e.Error.Message != "slow down" || e.Error.Type != "rate_limit_error" {
		t.Errorf("failure answer = %d %+v", resp.StatusCode, e)
	}

	r, err := http.Get(ts.URL + "/v1/responses")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 404 {
		t.Errorf("unknown path answered %d", r.StatusCode)
	}
}
