package testkit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// ChatModel is answered when a chat request names no model.
const ChatModel = "gpt-4.1"

// ChatServer is a scripted OpenAI Chat Completions endpoint
// (POST .../chat/completions), enough for opencode (through the AI SDK's
// openai-compatible provider) to follow a Script. Streaming requests get
// Server-Sent Events in the API's order: a role chunk, content deltas, each
// tool call as a chunk naming it (index, id, function name) followed by its
// arguments in pieces, a chunk with finish_reason, then — when the request
// set stream_options.include_usage — a chunk with empty choices and the
// usage, and `data: [DONE]`. Other requests get one chat.completion JSON.
// Step i answers the request whose conversation carries i tool messages;
// requests offering no tools (opencode's title generation) get a short text
// and do not advance the plan. It is an http.Handler, so it can also be
// mounted in an httptest.Server.
type ChatServer struct {
	serving // Start and Close

	script Script
	prefix string

	mu       sync.Mutex
	requests []Request
	seq      int
	// lastPrompt is the previous main request's prompt tokens: the
	// conversation only grows, so that much of the next prompt is a prefix
	// the API would have cached.
	lastPrompt int
}

// NewChatServer returns a server following s. Steps name the agent's own
// tools (opencode: bash with {"command"}, write with {"filePath",
// "content"}), with their arguments as Input.
func NewChatServer(s Script) *ChatServer {
	return &ChatServer{script: s, prefix: newPrefix()}
}

// Start listens on addr and serves in the background until Close. It
// returns the server's root URL; clients use it with "/v1" appended as
// their base URL.
func (s *ChatServer) Start(addr string) (string, error) {
	return s.start(addr, "chat model server", s)
}

// Requests returns a copy of every request seen so far, oldest first.
func (s *ChatServer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ServeHTTP answers POST /v1/chat/completions (or /chat/completions, for a
// base URL without /v1).
func (s *ChatServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest(w, r)
	if err != nil {
		writeChatError(w, Failure{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Message: err.Error()})
		return
	}
	body := req.Body
	var parsed chatRequest
	parseErr := json.Unmarshal(body, &parsed)
	if parseErr == nil {
		req.Model = parsed.Model
		req.Stream = parsed.Stream
		req.NumTools = len(parsed.Tools)
		req.NumToolResults = parsed.countToolResults()
	}
	prompt := estimateTokens(len(body))
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.seq++
	seq := s.seq
	cached := 0
	if req.NumTools > 0 {
		// Like the API, cache in 128-token blocks from 1024 tokens on.
		if s.lastPrompt >= 1024 && s.lastPrompt <= prompt {
			cached = s.lastPrompt / 128 * 128
		}
		s.lastPrompt = prompt
	}
	s.mu.Unlock()

	if r.URL.Path != "/v1/chat/completions" && r.URL.Path != "/chat/completions" {
		writeChatError(w, Failure{Status: http.StatusNotFound, Type: "invalid_request_error", Message: "no scripted endpoint " + r.URL.Path})
		return
	}
	if r.Method != http.MethodPost {
		writeChatError(w, Failure{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Message: "use POST"})
		return
	}
	if parseErr != nil {
		writeChatError(w, Failure{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "request body is not JSON: " + parseErr.Error()})
		return
	}
	// Side requests (titles) offer no tools; failing them too would only
	// hide the main failure behind a different message.
	if s.script.Fail != nil && req.NumTools > 0 {
		writeChatError(w, *s.script.Fail)
		return
	}
	c := s.reply(req, parsed, seq)
	c.prompt, c.cached = prompt, cached
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.json())
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = c.writeSSE(flushWriter{w}, parsed.StreamOptions.IncludeUsage)
}

// chatRequest is the part of a Chat Completions request the server reads.
type chatRequest struct {
	Model         string            `json:"model"`
	Stream        bool              `json:"stream"`
	Tools         []json.RawMessage `json:"tools"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages []struct {
		Role string `json:"role"`
	} `json:"messages"`
}

// countToolResults counts the tool messages: one per answered tool call.
func (r chatRequest) countToolResults() int {
	n := 0
	for _, m := range r.Messages {
		if m.Role == "tool" {
			n++
		}
	}
	return n
}

// chatCompletion is one scripted answer, rendered as JSON or as chunks.
type chatCompletion struct {
	id       string
	model    string
	created  int64
	text     string
	callID   string
	tool     string
	args     string // the tool's arguments, a JSON object as a string
	finish   string // "stop" or "tool_calls"
	prompt   int    // prompt tokens, cached included
	cached   int
	complete int
}

// reply builds the scripted answer to a request.
func (s *ChatServer) reply(req Request, parsed chatRequest, seq int) chatCompletion {
	model := parsed.Model
	if model == "" {
		model = ChatModel
	}
	id := fmt.Sprintf("%s%04d", s.prefix, seq)
	c := chatCompletion{
		id:      "chatcmpl-" + id,
		model:   model,
		created: time.Now().Unix(),
		finish:  "stop",
	}
	step := s.script.nextChat(req)
	c.text = step.Text
	if step.Tool != "" {
		input := step.Input
		if input == nil {
			input = map[string]any{}
		}
		args, err := json.Marshal(input)
		if err != nil {
			args = []byte("{}") // scripts hold plain maps: cannot happen
		}
		c.callID, c.tool, c.args, c.finish = "call_"+id, step.Tool, string(args), "tool_calls"
	}
	if c.text == "" && c.tool == "" {
		c.text = "Done."
	}
	c.complete = estimateTokens(len(c.text) + len(c.tool) + len(c.args))
	return c
}

// nextChat is next for an agent speaking Chat Completions: the endless
// step is a shell call in opencode's bash tool.
func (sc Script) nextChat(req Request) Step {
	if req.NumTools > 0 && sc.Endless && req.NumToolResults >= len(sc.Steps) {
		return Step{Tool: "bash", Input: map[string]any{
			"command":     fmt.Sprintf("echo airlock endless step %d", req.NumToolResults+1),
			"description": "Harmless step that keeps the run going",
		}}
	}
	return sc.next(req)
}

func (c chatCompletion) usage() map[string]any {
	return map[string]any{
		"prompt_tokens":             c.prompt,
		"completion_tokens":         c.complete,
		"total_tokens":              c.prompt + c.complete,
		"prompt_tokens_details":     map[string]any{"cached_tokens": c.cached},
		"completion_tokens_details": map[string]any{"reasoning_tokens": 0},
	}
}

// json renders the non-streaming response.
func (c chatCompletion) json() map[string]any {
	msg := map[string]any{"role": "assistant", "content": nil}
	if c.text != "" {
		msg["content"] = c.text
	}
	if c.tool != "" {
		msg["tool_calls"] = []any{map[string]any{
			"id": c.callID, "type": "function",
			"function": map[string]any{"name": c.tool, "arguments": c.args},
		}}
	}
	return map[string]any{
		"id": c.id, "object": "chat.completion", "created": c.created, "model": c.model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": c.finish}},
		"usage":   c.usage(),
	}
}

// writeSSE streams c the way the API does; the tool arguments arrive in
// two pieces so a client must concatenate them.
func (c chatCompletion) writeSSE(w io.Writer, includeUsage bool) error {
	chunk := func(delta map[string]any, finish any) map[string]any {
		out := map[string]any{
			"id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		}
		if includeUsage {
			out["usage"] = nil
		}
		return out
	}
	chunks := []map[string]any{chunk(map[string]any{"role": "assistant", "content": ""}, nil)}
	if c.text != "" {
		chunks = append(chunks, chunk(map[string]any{"content": c.text}, nil))
	}
	if c.tool != "" {
		half := len(c.args) / 2
		chunks = append(chunks,
			chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": 0, "id": c.callID, "type": "function",
				"function": map[string]any{"name": c.tool, "arguments": ""},
			}}}, nil),
			chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": 0, "function": map[string]any{"arguments": c.args[:half]},
			}}}, nil),
			chunk(map[string]any{"tool_calls": []any{map[string]any{
				"index": 0, "function": map[string]any{"arguments": c.args[half:]},
			}}}, nil),
		)
	}
	chunks = append(chunks, chunk(map[string]any{}, c.finish))
	if includeUsage {
		chunks = append(chunks, map[string]any{
			"id": c.id, "object": "chat.completion.chunk", "created": c.created, "model": c.model,
			"choices": []any{}, "usage": c.usage(),
		})
	}
	var buf bytes.Buffer
	for _, ch := range chunks {
		data, err := json.Marshal(ch)
		if err != nil {
			return fmt.Errorf("encode chat chunk: %w", err)
		}
		buf.Reset()
		fmt.Fprintf(&buf, "data: %s\n\n", data)
		if _, err := w.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "data: [DONE]\n\n")
	return err
}

// writeChatError answers with the OpenAI error shape.
func writeChatError(w http.ResponseWriter, f Failure) {
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	if f.Type == "" {
		f.Type = "server_error"
	}
	if f.NoRetry {
		w.Header().Set("X-Should-Retry", "false")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]any{"message": f.Message, "type": f.Type, "param": nil, "code": nil},
	})
}

// OpencodeDemoScript is the 4-step task for opencode working in dir (its
// write tool takes absolute paths): write hello.py, run it, commit it,
// then answer.
func OpencodeDemoScript(dir string) Script {
	return Script{
		Name: "demo",
		Steps: []Step{
			{
				Text: "I'll create a small Python script.",
				Tool: "write",
				Input: map[string]any{
					"filePath": strings.TrimSuffix(dir, "/") + "/hello.py",
					"content":  "print(\"Hello from airlock\")\n",
				},
			},
			{Text: "Let me run it.", Tool: "bash", Input: map[string]any{"command": "python3 hello.py", "description": "Run hello.py"}},
			{Text: "It works. Committing.", Tool: "bash", Input: map[string]any{"command": `git add hello.py && git commit -m "Add hello.py"`, "description": "Commit hello.py"}},
		},
		FinalText: "Created hello.py, which prints \"Hello from airlock\", and committed it.",
	}
}
