package testkit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// conversation builds a Messages API request body with n tool rounds.
func conversation(t *testing.T, stream bool, tools bool, n int) []byte {
	t.Helper()
	msgs := []any{map[string]any{"role": "user", "content": "do the task"}}
	for i := range n {
		msgs = append(msgs,
			map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "tool_use", "id": "t" + string(rune('a'+i)), "name": "Bash", "input": map[string]any{}}}},
			map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": "t", "content": "ok"}}},
		)
	}
	req := map[string]any{"model": "claude-test-model", "stream": stream, "max_tokens": 100, "messages": msgs}
	if tools {
		req["tools"] = []any{map[string]any{"name": "Bash", "input_schema": map[string]any{"type": "object"}}}
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScriptNext(t *testing.T) {
	write := Step{Text: "writing", Tool: "Write", Input: map[string]any{"file_path": "/w/a"}}
	run := Step{Tool: "Bash", Input: bashInput("ls", "list")}
	two := Script{Steps: []Step{write, run}, FinalText: "all done"}
	tests := []struct {
		name     string
		script   Script
		req      Request
		wantText string
		wantTool string
	}{
		{"side request gets text", two, Request{NumTools: 0, NumToolResults: 1}, "Scripted airlock run", ""},
		{"first step", two, Request{NumTools: 3}, "writing", "Write"},
		{"second step after one result", two, Request{NumTools: 3, NumToolResults: 1}, "", "Bash"},
		{"final text after all steps", two, Request{NumTools: 3, NumToolResults: 2}, "all done", ""},
		{"final text stays final", two, Request{NumTools: 3, NumToolResults: 7}, "all done", ""},
		{"no final text", Script{}, Request{NumTools: 3}, "Done.", ""},
		{"endless keeps calling tools", EndlessScript(), Request{NumTools: 3, NumToolResults: 40}, "", "Bash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.script.next(tt.req)
			if got.Text != tt.wantText || got.Tool != tt.wantTool {
				t.Errorf("next() = text %q tool %q, want text %q tool %q", got.Text, got.Tool, tt.wantText, tt.wantTool)
			}
		})
	}
}

func TestCountToolResults(t *testing.T) {
	tests := []struct {
		name string
		body string
		want int
	}{
		{"string content", `{"messages":[{"role":"user","content":"hi"}]}`, 0},
		{"text blocks only", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, 0},
		{"one result among blocks", `{"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"tool_result","tool_use_id":"a"}]}]}`, 1},
		{"parallel results in one message", `{"messages":[{"role":"user","content":[{"type":"tool_result"},{"type":"tool_result"}]}]}`, 2},
		{"results across messages", `{"messages":[{"role":"user","content":[{"type":"tool_result"}]},{"role":"assistant","content":[{"type":"tool_use"}]},{"role":"user","content":[{"type":"tool_result"}]}]}`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r messagesRequest
			if err := json.Unmarshal([]byte(tt.body), &r); err != nil {
				t.Fatal(err)
			}
			if got := r.countToolResults(); got != tt.want {
				t.Errorf("countToolResults() = %d, want %d", got, tt.want)
			}
		})
	}
}

type event struct {
	name string
	data map[string]any
}

// parseSSE reads an event stream the way an SSE client does.
func parseSSE(t *testing.T, r io.Reader) []event {
	t.Helper()
	var events []event
	var name string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var d map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d); err != nil {
				t.Fatalf("event %s: data is not JSON: %v", name, err)
			}
			if d["type"] != name {
				t.Errorf("event %q carries data of type %v", name, d["type"])
			}
			events = append(events, event{name, d})
		case line == "":
		default:
			t.Errorf("unexpected line in stream: %q", line)
		}
	}
	return events
}

// assemble rebuilds a message from its events as an SDK would.
func assemble(t *testing.T, events []event) (texts []string, tools []map[string]any, stop string, outTokens float64) {
	t.Helper()
	partial := map[int]string{}
	for _, e := range events {
		switch e.name {
		case "content_block_delta":
			i := int(e.data["index"].(float64))
			d := e.data["delta"].(map[string]any)
			switch d["type"] {
			case "text_delta":
				texts = append(texts, d["text"].(string))
			case "input_json_delta":
				partial[i] += d["partial_json"].(string)
			}
		case "content_block_stop":
			i := int(e.data["index"].(float64))
			if js, ok := partial[i]; ok {
				var in map[string]any
				if err := json.Unmarshal([]byte(js), &in); err != nil {
					t.Fatalf("tool input of block %d is not JSON: %v", i, err)
				}
				tools = append(tools, in)
			}
		case "message_delta":
			stop = e.data["delta"].(map[string]any)["stop_reason"].(string)
			outTokens = e.data["usage"].(map[string]any)["output_tokens"].(float64)
		}
	}
	return texts, tools, stop, outTokens
}

func TestWriteSSE(t *testing.T) {
	m := message{
		ID: "msg_1", Type: "message", Role: "assistant", Model: DefaultModel,
		Content: []block{
			{Type: "text", Text: "Running \"it\"\nnow"},
			{Type: "tool_use", ID: "toolu_1", Name: "Bash", Input: bashInput(`echo "a\b" && ls`, "d")},
		},
		StopReason: "tool_use",
		Usage:      usage{InputTokens: 100, OutputTokens: 20},
	}
	var buf bytes.Buffer
	if err := m.writeSSE(&buf); err != nil {
		t.Fatal(err)
	}
	events := parseSSE(t, &buf)
	var names []string
	for _, e := range events {
		names = append(names, e.name)
	}
	wantNames := []string{
		"message_start",
		"content_block_start", "content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta", "content_block_stop",
		"message_delta", "message_stop",
	}
	if !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("events = %v, want %v", names, wantNames)
	}
	start := events[0].data["message"].(map[string]any)
	if start["model"] != DefaultModel || start["stop_reason"] != nil || start["usage"].(map[string]any)["input_tokens"] != 100.0 {
		t.Errorf("message_start = %v, want model, null stop_reason and input usage", start)
	}
	toolStart := events[4].data["content_block"].(map[string]any)
	if toolStart["id"] != "toolu_1" || toolStart["name"] != "Bash" {
		t.Errorf("tool block start = %v", toolStart)
	}
	texts, tools, stop, out := assemble(t, events)
	if len(texts) != 1 || texts[0] != "Running \"it\"\nnow" {
		t.Errorf("texts = %q", texts)
	}
	if len(tools) != 1 || tools[0]["command"] != `echo "a\b" && ls` {
		t.Errorf("tool inputs = %v", tools)
	}
	if stop != "tool_use" || out != 20 {
		t.Errorf("message_delta stop %q output_tokens %v, want tool_use 20", stop, out)
	}
}

func post(t *testing.T, h http.Handler, path string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestServerStreamsScriptedSteps(t *testing.T) {
	s := NewServer(DemoScriptIn("/w"))
	wantTools := []string{"Write", "Bash", "Bash", ""}
	ids := map[string]bool{}
	for n, want := range wantTools {
		w := post(t, s, "/v1/messages?beta=true", conversation(t, true, true, n), map[string]string{"x-api-key": "sk-real"})
		if w.Code != 200 || w.Header().Get("Content-Type") != "text/event-stream" {
			t.Fatalf("step %d: status %d type %q", n, w.Code, w.Header().Get("Content-Type"))
		}
		events := parseSSE(t, w.Body)
		_, tools, stop, _ := assemble(t, events)
		if want == "" {
			if stop != "end_turn" || len(tools) != 0 {
				t.Errorf("step %d: stop %q with %d tools, want end_turn and none", n, stop, len(tools))
			}
			continue
		}
		if stop != "tool_use" || len(tools) != 1 {
			t.Fatalf("step %d: stop %q with %d tools, want one tool_use", n, stop, len(tools))
		}
		for _, e := range events {
			if b, ok := e.data["content_block"].(map[string]any); ok && b["type"] == "tool_use" {
				if b["name"] != want {
					t.Errorf("step %d: tool %v, want %s", n, b["name"], want)
				}
				id := b["id"].(string)
				if ids[id] {
					t.Errorf("step %d: tool_use id %s repeated", n, id)
				}
				ids[id] = true
			}
		}
	}
	if got := DemoScriptIn("/w").Steps[0].Input.(map[string]any)["file_path"]; got != "/w/hello.py" {
		t.Errorf("demo writes %v, want /w/hello.py", got)
	}

	reqs := s.Requests()
	if len(reqs) != len(wantTools) {
		t.Fatalf("recorded %d requests, want %d", len(reqs), len(wantTools))
	}
	for i, r := range reqs {
		if r.APIKey() != "sk-real" || r.Model != "claude-test-model" || !r.Stream || r.NumToolResults != i || r.Path != "/v1/messages" || r.Query != "beta=true" {
			t.Errorf("request %d recorded as %+v", i, r)
		}
	}
}

func TestServerRepeatedStepGetsFreshID(t *testing.T) {
	s := NewServer(DemoScript())
	var ids []string
	for range 2 {
		w := post(t, s, "/v1/messages", conversation(t, false, true, 0), nil)
		var m message
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Content[len(m.Content)-1].ID)
	}
	if ids[0] == ids[1] || ids[0] == "" {
		t.Errorf("a retried step got ids %q; Claude Code loops forever on repeated ids", ids)
	}
}

func TestServerResponses(t *testing.T) {
	tests := []struct {
		name       string
		script     Script
		path       string
		body       []byte
		wantStatus int
		check      func(t *testing.T, w *httptest.ResponseRecorder)
	}{
		{
			name: "non-streaming request gets a JSON message", script: DemoScript(), path: "/v1/messages",
			body: conversation(t, false, true, 0), wantStatus: 200,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				var m message
				if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
					t.Fatal(err)
				}
				last := m.Content[len(m.Content)-1]
				if m.Model != "claude-test-model" || m.StopReason != "tool_use" || last.Name != "Write" || m.Usage.InputTokens == 0 || m.Usage.OutputTokens == 0 {
					t.Errorf("message = %+v", m)
				}
			},
		},
		{
			name: "count_tokens", script: DemoScript(), path: "/v1/messages/count_tokens",
			body: conversation(t, false, true, 0), wantStatus: 200,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				var c struct {
					InputTokens int `json:"input_tokens"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil || c.InputTokens < 10 {
					t.Errorf("count_tokens = %s (%v)", w.Body, err)
				}
			},
		},
		{
			name: "failure script answers with the API error", script: FailScript(), path: "/v1/messages",
			body: conversation(t, true, true, 0), wantStatus: 500,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				wantErr(t, w, "api_error", "scripted failure")
				if w.Header().Get("X-Should-Retry") != "false" {
					t.Errorf("x-should-retry = %q, want false", w.Header().Get("X-Should-Retry"))
				}
			},
		},
		{
			name: "failure defaults to 500 api_error", script: Script{Fail: &Failure{Message: "boom"}}, path: "/v1/messages",
			body: conversation(t, false, true, 0), wantStatus: 500,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				wantErr(t, w, "api_error", "boom")
				if w.Header().Get("X-Should-Retry") != "" {
					t.Errorf("x-should-retry = %q, want unset", w.Header().Get("X-Should-Retry"))
				}
			},
		},
		{
			name: "failure script still answers side requests", script: FailScript(), path: "/v1/messages",
			body: conversation(t, false, false, 0), wantStatus: 200,
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if !strings.Contains(w.Body.String(), "Scripted airlock run") {
					t.Errorf("body = %s", w.Body)
				}
			},
		},
		{
			name: "unknown endpoint", script: DemoScript(), path: "/v1/complete",
			body: []byte(`{}`), wantStatus: 404,
			check: func(t *testing.T, w *httptest.ResponseRecorder) { wantErr(t, w, "not_found_error", "/v1/complete") },
		},
		{
			name: "body is not JSON", script: DemoScript(), path: "/v1/messages",
			body: []byte(`{"model":`), wantStatus: 400,
			check: func(t *testing.T, w *httptest.ResponseRecorder) { wantErr(t, w, "invalid_request_error", "not JSON") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := post(t, NewServer(tt.script), tt.path, tt.body, nil)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.wantStatus, w.Body)
			}
			tt.check(t, w)
		})
	}
}

func wantErr(t *testing.T, w *httptest.ResponseRecorder, typ, msgPart string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	if e.Type != "error" || e.Error.Type != typ || !strings.Contains(e.Error.Message, msgPart) {
		t.Errorf("error = %+v, want type %s mentioning %q", e, typ, msgPart)
	}
}

func TestStartServesOverTCP(t *testing.T) {
	s := NewServer(DemoScript())
	url, err := s.Start("0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("url %q, want loopback for an unspecified address", url)
	}
	resp, err := http.Post(url+"/v1/messages/count_tokens", "application/json", strings.NewReader(`{"messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if _, err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("second Start succeeded, want an error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Post(url+"/v1/messages/count_tokens", "application/json", strings.NewReader(`{}`)); err == nil {
		t.Error("server still answers after Close")
	}
}
