package testkit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// responsesBody builds a Responses API request body whose input carries n
// tool rounds, as Codex sends it (the whole conversation, store false).
func responsesBody(t *testing.T, stream, tools bool, n int) []byte {
	t.Helper()
	input := []any{map[string]any{"type": "message", "role": "user", "content": []any{map[string]any{"type": "input_text", "text": "do the task"}}}}
	for i := range n {
		if i%2 == 0 {
			input = append(input,
				map[string]any{"type": "function_call", "call_id": "c", "name": "exec_command", "arguments": "{}"},
				map[string]any{"type": "function_call_output", "call_id": "c", "output": "ok"})
		} else {
			input = append(input,
				map[string]any{"type": "custom_tool_call", "call_id": "p", "name": "apply_patch", "input": "x"},
				map[string]any{"type": "custom_tool_call_output", "call_id": "p", "output": "ok"})
		}
	}
	req := map[string]any{"model": "gpt-5.5", "stream": stream, "input": input, "store": false}
	if tools {
		req["tools"] = []any{map[string]any{"type": "function", "name": "exec_command"}}
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sseData returns the data of each event of an SSE stream, checking that
// every event's name matches its data's type.
func sseData(t *testing.T, r io.Reader) []map[string]any {
	t.Helper()
	var out []map[string]any
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
				t.Fatalf("event data %q: %v", line, err)
			}
			if d["type"] != name {
				t.Errorf("event %q carries type %v", name, d["type"])
			}
			out = append(out, d)
		}
	}
	return out
}

func TestResponsesStream(t *testing.T) {
	script := Script{Steps: []Step{
		ExecStep("Running.", "ls"),
		{Tool: "apply_patch", Input: "*** Begin Patch\n*** End Patch\n"},
	}, FinalText: "All done."}
	tests := []struct {
		name    string
		results int
		// the event types between in_progress and completed
		want     []string
		wantItem map[string]any // the last output item's fields
	}{
		{"text then function call", 0, []string{
			"response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done",
			"response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
		}, map[string]any{"type": "function_call", "name": "exec_command", "arguments": `{"cmd":"ls"}`}},
		{"custom tool call", 1, []string{
			"response.output_item.added", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done", "response.output_item.done",
		}, map[string]any{"type": "custom_tool_call", "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch\n"}},
		{"final text", 2, []string{
			"response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done",
		}, map[string]any{"type": "message", "role": "assistant"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := NewResponsesServer(script)
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/v1/responses", bytes.NewReader(responsesBody(t, true, true, tt.results)))
			req.Header.Set("Authorization", "Bearer sk-test")
			srv.ServeHTTP(rec, req)
			if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/event-stream") {
				t.Fatalf("status %d content type %q", rec.Code, rec.Header().Get("Content-Type"))
			}
			evs := sseData(t, rec.Body)
			var types []string
			for i, ev := range evs {
				types = append(types, ev["type"].(string))
				if ev["sequence_number"] != float64(i) {
					t.Errorf("event %d has sequence_number %v", i, ev["sequence_number"])
				}
			}
			want := append(append([]string{"response.created", "response.in_progress"}, tt.want...), "response.completed")
			if strings.Join(types, " ") != strings.Join(want, " ") {
				t.Errorf("events\n%s\nwant\n%s", strings.Join(types, "\n"), strings.Join(want, "\n"))
			}
			done := evs[len(evs)-1]["response"].(map[string]any)
			output := done["output"].([]any)
			last := output[len(output)-1].(map[string]any)
			for k, v := range tt.wantItem {
				if last[k] != v {
					t.Errorf("last item %s = %v, want %v", k, last[k], v)
				}
			}
			if tt.results == 2 {
				if text := last["content"].([]any)[0].(map[string]any)["text"]; text != "All done." {
					t.Errorf("final text %v", text)
				}
			}
			// A message is added with empty content (Codex decodes the item
			// before it accepts its text deltas); a call with empty arguments.
			for _, ev := range evs {
				item, _ := ev["item"].(map[string]any)
				if ev["type"] != "response.output_item.added" {
					continue
				}
				switch item["type"] {
				case "message":
					if c, ok := item["content"].([]any); !ok || len(c) != 0 || item["role"] != "assistant" {
						t.Errorf("message added as %v, want empty content and role", item)
					}
				case "function_call":
					if item["arguments"] != "" || item["call_id"] == "" {
						t.Errorf("call added as %v", item)
					}
				}
			}
			// Every item added is done, with the same id, and the completed
			// response lists the done items in order.
			var doneItems []any
			for _, ev := range evs {
				if ev["type"] == "response.output_item.done" {
					doneItems = append(doneItems, ev["item"])
				}
			}
			a, _ := json.Marshal(doneItems)
			b, _ := json.Marshal(output)
			if !bytes.Equal(a, b) {
				t.Errorf("completed output %s differs from the items done %s", b, a)
			}
			if done["status"] != "completed" || evs[0]["response"].(map[string]any)["status"] != "in_progress" {
				t.Errorf("statuses: created %v, completed %v", evs[0]["response"].(map[string]any)["status"], done["status"])
			}
			usage := done["usage"].(map[string]any)
			in, out := usage["input_tokens"].(float64), usage["output_tokens"].(float64)
			cached := usage["input_tokens_details"].(map[string]any)["cached_tokens"].(float64)
			if in <= 0 || out <= 0 || usage["total_tokens"].(float64) != in+out || cached > in || (tt.results > 0) != (cached > 0) {
				t.Errorf("usage %v: want tokens both ways, a total, and cached tokens (part of input) after the first turn", usage)
			}
			if sent := srv.Sent(); len(sent) != 1 || sent[0] != (ResponsesSent{"gpt-5.5", int(in), int(cached), int(out)}) {
				t.Errorf("Sent() = %+v, want the usage streamed", sent)
			}
			if got := srv.Requests(); len(got) != 1 || got[0].APIKey() != "sk-test" || got[0].NumToolResults != tt.results || got[0].NumTools != 1 {
				t.Errorf("recorded %+v", got)
			}
		})
	}
}

func TestResponsesNonStreaming(t *testing.T) {
	srv := NewResponsesServer(Script{FinalText: "plain"})
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/responses", bytes.NewReader(responsesBody(t, false, true, 0))))
	var resp struct {
		Object string `json:"object"`
		Status string `json:"status"`
		Output []struct {
			Content []struct{ Text string } `json:"content"`
		} `json:"output"`
		Usage struct {
			InputTokens int `json:"input_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if resp.Object != "response" || resp.Status != "completed" || resp.Output[0].Content[0].Text != "plain" || resp.Usage.InputTokens == 0 {
		t.Errorf("response %+v", resp)
	}
}

func TestResponsesErrors(t *testing.T) {
	fail := NewResponsesServer(Script{Fail: &Failure{Status: 400, Type: "invalid_request_error", Message: "scripted"}})
	ok := NewResponsesServer(Script{})
	tests := []struct {
		name     string
		srv      *ResponsesServer
		method   string
		path     string
		body     string
		status   int
		wantText string
	}{
		{"scripted failure", fail, "POST", "/v1/responses", string(responsesBody(t, true, true, 0)), 400, "scripted"},
		{"wrong path", ok, "POST", "/v1/chat/completions", "{}", 404, "no scripted endpoint /v1/chat/completions"},
		{"wrong method", ok, "GET", "/v1/responses", "", 405, "use POST"},
		{"not JSON", ok, "POST", "/v1/responses", "{", 400, "not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.srv.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body)))
			var e struct {
				Error struct{ Message, Type string } `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("%v: %s", err, rec.Body)
			}
			if rec.Code != tt.status || !strings.Contains(e.Error.Message, tt.wantText) || e.Error.Type == "" {
				t.Errorf("status %d error %+v, want %d with %q", rec.Code, e.Error, tt.status, tt.wantText)
			}
		})
	}
}

func TestResponsesServerStartEndless(t *testing.T) {
	srv := NewResponsesServer(EndlessScript())
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !strings.HasSuffix(base, "/v1") {
		t.Errorf("base URL %q, want one ending in /v1 (Codex's base_url)", base)
	}
	resp, err := http.Post(base+"/responses", "application/json", bytes.NewReader(responsesBody(t, true, true, 40)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	evs := sseData(t, resp.Body)
	item := evs[len(evs)-2]["item"].(map[string]any)
	if item["name"] != "exec_command" || !strings.Contains(item["arguments"].(string), "endless step 41") {
		t.Errorf("endless script answered %v, want another exec_command", item)
	}
}
