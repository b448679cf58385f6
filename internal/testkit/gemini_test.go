package testkit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// geminiConversation builds a generateContent body with n function rounds.
func geminiConversation(t *testing.T, tools bool, n int) []byte {
	t.Helper()
	contents := []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": "do the task"}}}}
	for i := range n {
		id := fmt.Sprintf("run_shell_command_%d", i)
		resp := map[string]any{"functionResponse": map[string]any{"id": id, "name": "run_shell_command", "response": map[string]any{"output": "ok"}}}
		contents = append(contents,
			map[string]any{"role": "model", "parts": []any{map[string]any{"functionCall": map[string]any{"id": id, "name": "run_shell_command", "args": map[string]any{}}}}},
			// As the CLI resumes a session: each response twice.
			map[string]any{"role": "user", "parts": []any{resp, resp}},
		)
	}
	req := map[string]any{"contents": contents}
	if tools {
		req["tools"] = []any{map[string]any{"functionDeclarations": []any{map[string]any{"name": "run_shell_command"}, map[string]any{"name": "write_file"}}}}
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type geminiChunk struct {
	Candidates []struct {
		Content struct {
			Role  string `json:"role"`
			Parts []struct {
				Text         string `json:"text"`
				FunctionCall *struct {
					Name string         `json:"name"`
					Args map[string]any `json:"args"`
				} `json:"functionCall"`
				ThoughtSignature string `json:"thoughtSignature"`
			} `json:"parts"`
		} `json:"content"`
		FinishReason string `json:"finishReason"`
	} `json:"candidates"`
	UsageMetadata struct {
		PromptTokenCount        int `json:"promptTokenCount"`
		CandidatesTokenCount    int `json:"candidatesTokenCount"`
		CachedContentTokenCount int `json:"cachedContentTokenCount"`
		TotalTokenCount         int `json:"totalTokenCount"`
	} `json:"usageMetadata"`
	ModelVersion string `json:"modelVersion"`
	ResponseID   string `json:"responseId"`
}

func postGemini(t *testing.T, url, path string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Goog-Api-Key", "AIza-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// sseChunks reads a stream as the Gemini SDK does: data lines separated by
// a blank line (CRLF CRLF from the real API).
func sseChunks(t *testing.T, r io.Reader) []geminiChunk {
	t.Helper()
	raw, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	var out []geminiChunk
	for _, ev := range strings.Split(string(raw), "\r\n\r\n") {
		if ev == "" {
			continue
		}
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("event %q is not one data line", ev)
		}
		var c geminiChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		out = append(out, c)
	}
	return out
}

func TestGeminiServerStreamsScript(t *testing.T) {
	s := NewGeminiServer(GeminiDemoScript("/workspace"))
	ts := httptest.NewServer(s)
	defer ts.Close()
	const path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
	wantTools := []string{"write_file", "run_shell_command", "run_shell_command", ""}
	for n, want := range wantTools {
		resp := postGemini(t, ts.URL, path, geminiConversation(t, true, n))
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("step %d: %d %s", n, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		chunks := sseChunks(t, resp.Body)
		if len(chunks) < 2 {
			t.Fatalf("step %d: %d chunks, want text in pieces", n, len(chunks))
		}
		var text, tool string
		prevOut := 0
		for i, c := range chunks {
			if len(c.Candidates) != 1 || c.Candidates[0].Content.Role != "model" || c.ModelVersion != "gemini-2.5-flash" || c.ResponseID == "" {
				t.Fatalf("step %d chunk %d: %+v", n, i, c)
			}
			last := i == len(chunks)-1
			if (c.Candidates[0].FinishReason == "STOP") != last {
				t.Errorf("step %d chunk %d: finishReason %q", n, i, c.Candidates[0].FinishReason)
			}
			u := c.UsageMetadata
			if u.PromptTokenCount == 0 || u.CandidatesTokenCount < prevOut || u.TotalTokenCount != u.PromptTokenCount+u.CandidatesTokenCount {
				t.Errorf("step %d chunk %d: usage %+v", n, i, u)
			}
			if (u.CachedContentTokenCount > 0) != (n > 0) || u.CachedContentTokenCount > u.PromptTokenCount {
				t.Errorf("step %d chunk %d: cached %d of %d", n, i, u.CachedContentTokenCount, u.PromptTokenCount)
			}
			prevOut = u.CandidatesTokenCount
			for _, p := range c.Candidates[0].Content.Parts {
				text += p.Text
				if p.FunctionCall != nil {
					tool = p.FunctionCall.Name
					if p.ThoughtSignature == "" {
						t.Errorf("step %d: function call without a thought signature", n)
					}
				}
			}
		}
		if tool != want {
			t.Errorf("step %d: tool %q, want %q", n, tool, want)
		}
		if want == "" && !strings.Contains(text, "committed it") {
			t.Errorf("final text %q", text)
		}
	}
	sent := s.Sent()
	if len(sent) != 4 || sent[0].Cached != 0 || sent[1].Cached == 0 || sent[3].All != sent[3].Prompt+sent[3].Candidates || sent[3].Model != "gemini-2.5-flash" {
		t.Errorf("sent usage %+v", sent)
	}
	reqs := s.Requests()
	if len(reqs) != 4 || reqs[3].NumToolResults != 3 || reqs[0].Model != "gemini-2.5-flash" || !reqs[0].Stream || reqs[0].APIKey() != "AIza-test" || reqs[0].Query != "alt=sse" {
		t.Errorf("requests recorded wrong: %+v", reqs[0])
	}
}

func TestGeminiServerSideRequests(t *testing.T) {
	s := NewGeminiServer(GeminiDemoScript("/workspace"))
	ts := httptest.NewServer(s)
	defer ts.Close()

	// The `auto` model's router asks for JSON, without tools.
	router := `{"contents":[{"role":"user","parts":[{"text":"route"}]}],"generationConfig":{"responseMimeType":"application/json","responseJsonSchema":{"type":"object","properties":{"reasoning":{"type":"string"},"model_choice":{"type":"string","enum":["pro","flash"]},"other":{"type":"string","enum":["b","a"]},"n":{"type":"integer"}},"required":["reasoning","model_choice"]}}}`
	resp := postGemini(t, ts.URL, "/v1beta/models/gemini-3.5-flash-lite:generateContent", []byte(router))
	var c geminiChunk
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != 200 {
		t.Fatalf("router: %d %v", resp.StatusCode, err)
	}
	var choice map[string]any
	if err := json.Unmarshal([]byte(c.Candidates[0].Content.Parts[0].Text), &choice); err != nil {
		t.Fatalf("router answer %q is not JSON: %v", c.Candidates[0].Content.Parts[0].Text, err)
	}
	if choice["model_choice"] != "flash" || choice["reasoning"] == "" || choice["other"] != "b" || choice["n"] != float64(0) {
		t.Errorf("router answer %v", choice)
	}
	if c.Candidates[0].FinishReason != "STOP" || c.UsageMetadata.TotalTokenCount == 0 || c.ModelVersion != "gemini-3.5-flash-lite" {
		t.Errorf("router response %+v", c)
	}

	resp = postGemini(t, ts.URL, "/v1beta/models/gemini-2.5-flash:countTokens", geminiConversation(t, false, 0))
	var ct struct{ TotalTokens int }
	if err := json.NewDecoder(resp.Body).Decode(&ct); err != nil || ct.TotalTokens == 0 {
		t.Errorf("countTokens: %v %+v", err, ct)
	}

	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/v1beta/models/gemini-2.5-flash:embedContent", 404},
		{"/v1beta/files", 404},
		{"/v1beta/models/:generateContent", 404},
	} {
		resp := postGemini(t, ts.URL, tt.path, []byte(`{}`))
		var e struct {
			Error struct {
				Code   int
				Status string
			}
		}
		if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&e); err != nil || resp.StatusCode != tt.status || e.Error.Code != tt.status || e.Error.Status == "" {
			t.Errorf("%s: %d %+v %v", tt.path, resp.StatusCode, e, err)
		}
	}
}

func TestGeminiServerFailure(t *testing.T) {
	s := NewGeminiServer(Script{Fail: &Failure{Status: 429, Message: "quota"}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	resp := postGemini(t, ts.URL, "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", geminiConversation(t, true, 0))
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || !strings.Contains(string(body), `"status":"RESOURCE_EXHAUSTED"`) || !strings.Contains(string(body), "quota") {
		t.Errorf("failure: %d %s", resp.StatusCode, body)
	}
}
