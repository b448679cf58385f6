// Package testkit holds the pieces airlock uses to run a real agent without
// a real model: a scripted server that speaks the Anthropic Messages API well
// enough for the Claude Code CLI to follow a fixed plan of tool calls. The
// demo command and the integration tests both drive the real CLI with it.
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

// DefaultModel is answered when a request names no model. Claude Code
// prices a run from the model name in the response, so it must be a real id.
const DefaultModel = "claude-sonnet-4-5-20250929"

// maxRequestBody bounds what one request may send; Claude Code's requests
// carry the whole conversation plus tool schemas, typically well under 1 MiB.
const maxRequestBody = 32 << 20

// Step is one scripted model turn. With Tool set it is a tool call (Input is
// marshalled to JSON as the tool's arguments), optionally preceded by Text;
// otherwise it is a plain text answer.
type Step struct {
	Text  string
	Tool  string
	Input any
}

// Failure makes the server answer every main request with an API error.
type Failure struct {
	Status  int    // HTTP status, e.g. 400 or 500; zero means 500
	Type    string // Anthropic error type, e.g. "invalid_request_error"; empty means "api_error"
	Message string
	// NoRetry sets `x-should-retry: false`, which the Anthropic SDKs honour.
	NoRetry bool
}

// Script is the plan the server follows. Step i answers the request that
// carries i tool results, so the plan advances exactly when the agent has
// run the previous tool, whatever side requests it makes in between.
type Script struct {
	Name      string
	Steps     []Step
	FinalText string   // the answer once all steps are done
	Fail      *Failure // answer every main request with this error
	Endless   bool     // after Steps, keep issuing harmless tool calls
}

// Request is what the server saw, kept for assertions.
type Request struct {
	Method         string
	Path           string // URL path, e.g. /v1/messages
	Query          string // raw query, e.g. beta=true
	Headers        http.Header
	Body           []byte
	Model          string
	Stream         bool
	NumTools       int       // tools offered; zero for side requests
	NumToolResults int       // tool_result blocks in the conversation
	At             time.Time // when it arrived
}

// APIKey returns the credential the client sent, from x-api-key,
// x-goog-api-key (the Gemini API) or a bearer Authorization header.
func (r Request) APIKey() string {
	if k := r.Headers.Get("X-Goog-Api-Key"); k != "" {
		return k
	}
	if k := r.Headers.Get("X-Api-Key"); k != "" {
		return k
	}
	return strings.TrimPrefix(r.Headers.Get("Authorization"), "Bearer ")
}

// Server is a scripted Anthropic Messages API endpoint. It is an
// http.Handler, so it can also be mounted in an httptest.Server.
type Server struct {
	serving // Start and Close

	script Script
	prefix string // makes ids unique across servers

	mu       sync.Mutex
	requests []Request
	seq      int
}

// NewServer returns a server following s.
func NewServer(s Script) *Server {
	return &Server{script: s, prefix: newPrefix()}
}

// Start listens on addr (e.g. "127.0.0.1:0", "0.0.0.0:0", "172.17.0.1:0")
// and serves in the background until Close. It returns the base URL to put
// in ANTHROPIC_BASE_URL; for an unspecified address the URL names loopback
// and the caller substitutes the address its client can reach.
func (s *Server) Start(addr string) (string, error) {
	return s.start(addr, "model server", s)
}

// Requests returns a copy of every request seen so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ServeHTTP answers /v1/messages and /v1/messages/count_tokens.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest(w, r)
	if err != nil {
		writeError(w, Failure{Status: http.StatusRequestEntityTooLarge, Type: "request_too_large", Message: err.Error()})
		return
	}
	body := req.Body
	var parsed messagesRequest
	parseErr := json.Unmarshal(body, &parsed)
	if parseErr == nil {
		req.Model = parsed.Model
		req.Stream = parsed.Stream
		req.NumTools = len(parsed.Tools)
		req.NumToolResults = parsed.countToolResults()
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.seq++
	seq := s.seq
	s.mu.Unlock()

	switch {
	case r.URL.Path == "/v1/messages/count_tokens":
		if r.Method != http.MethodPost {
			writeError(w, Failure{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Message: "use POST"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"input_tokens": estimateTokens(len(body))})
	case r.URL.Path == "/v1/messages":
		if r.Method != http.MethodPost {
			writeError(w, Failure{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Message: "use POST"})
			return
		}
		if parseErr != nil {
			writeError(w, Failure{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "request body is not JSON: " + parseErr.Error()})
			return
		}
		// Side requests (titles, summaries) offer no tools; failing them
		// too would only hide the main failure behind a different message.
		if s.script.Fail != nil && req.NumTools > 0 {
			writeError(w, *s.script.Fail)
			return
		}
		m := s.reply(req, seq)
		if req.Stream {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			_ = m.writeSSE(flushWriter{w})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(m)
	default:
		writeError(w, Failure{Status: http.StatusNotFound, Type: "not_found_error", Message: "no scripted endpoint " + r.URL.Path})
	}
}

// reply builds the scripted answer to a request.
func (s *Server) reply(req Request, seq int) message {
	return scriptedReply(s.script, s.prefix, req, seq)
}

// scriptedReply is the Anthropic message answering req, the seq-th request
// of a server whose ids start with prefix.
func scriptedReply(script Script, prefix string, req Request, seq int) message {
	model := req.Model
	if model == "" {
		model = DefaultModel
	}
	id := fmt.Sprintf("%s%04d", prefix, seq)
	m := message{
		ID:    "msg_" + id,
		Type:  "message",
		Role:  "assistant",
		Model: model,
		Usage: usage{InputTokens: estimateTokens(len(req.Body))},
	}
	step := script.next(req)
	if step.Text != "" {
		m.Content = append(m.Content, block{Type: "text", Text: step.Text})
	}
	m.StopReason = "end_turn"
	if step.Tool != "" {
		input := step.Input
		if input == nil {
			input = map[string]any{}
		}
		m.Content = append(m.Content, block{Type: "tool_use", ID: "toolu_" + id, Name: step.Tool, Input: input})
		m.StopReason = "tool_use"
	}
	if len(m.Content) == 0 {
		m.Content = []block{{Type: "text", Text: "Done."}}
	}
	out := 0
	for _, b := range m.Content {
		enc, _ := json.Marshal(b)
		out += len(enc)
	}
	m.Usage.OutputTokens = estimateTokens(out)
	return m
}

// next picks the step answering req: side requests get a short text, the
// main conversation the step numbered by its tool results.
func (sc Script) next(req Request) Step {
	if req.NumTools == 0 {
		return Step{Text: "Scripted airlock run"}
	}
	n := req.NumToolResults
	if n < len(sc.Steps) {
		return sc.Steps[n]
	}
	if sc.Endless {
		return Step{Tool: "Bash", Input: bashInput(fmt.Sprintf("echo airlock endless step %d", n+1), "Harmless step that keeps the run going")}
	}
	if sc.FinalText == "" {
		return Step{Text: "Done."}
	}
	return Step{Text: sc.FinalText}
}

// estimateTokens is the usual ~4 bytes per token, at least 1.
func estimateTokens(n int) int { return n/4 + 1 }

func writeError(w http.ResponseWriter, f Failure) {
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	if f.Type == "" {
		f.Type = "api_error"
	}
	if f.NoRetry {
		w.Header().Set("X-Should-Retry", "false")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":  "error",
		"error": map[string]string{"type": f.Type, "message": f.Message},
	})
}

// messagesRequest is the part of a Messages API request the server reads.
type messagesRequest struct {
	Model    string            `json:"model"`
	Stream   bool              `json:"stream"`
	Tools    []json.RawMessage `json:"tools"`
	Messages []struct {
		Content json.RawMessage `json:"content"` // a string or a list of blocks
	} `json:"messages"`
}

func (r messagesRequest) countToolResults() int {
	n := 0
	for _, m := range r.Messages {
		var blocks []struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(m.Content, &blocks) != nil {
			continue // plain string content
		}
		for _, b := range blocks {
			if b.Type == "tool_result" {
				n++
			}
		}
	}
	return n
}

// message is a Messages API response; it encodes itself as JSON for
// non-streaming requests and as an event stream with writeSSE.
type message struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Role         string  `json:"role"`
	Model        string  `json:"model"`
	Content      []block `json:"content"`
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        usage   `json:"usage"`
}

type block struct {
	Type  string `json:"type"`
	Text  string `json:"text,omitempty"`
	ID    string `json:"id,omitempty"`
	Name  string `json:"name,omitempty"`
	Input any    `json:"input,omitempty"`
}

type usage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

// writeSSE writes m as the Messages API streams it: the message shell, each
// block as start/delta/stop, then the stop reason and final usage.
func (m message) writeSSE(w io.Writer) error {
	events, err := m.events()
	if err != nil {
		return err
	}
	for _, e := range events {
		if err := e.write(w); err != nil {
			return err
		}
	}
	return nil
}

// events is m as the Messages API's stream of events, which Bedrock and
// Vertex carry too, each in its own framing.
func (m message) events() ([]sseEvent, error) {
	shell := m
	shell.Content = []block{}
	shell.StopReason = ""
	shell.Usage.OutputTokens = 1
	events := []sseEvent{{"message_start", map[string]any{"type": "message_start", "message": shellJSON(shell)}}}
	for i, b := range m.Content {
		var start, delta map[string]any
		switch b.Type {
		case "tool_use":
			args, err := json.Marshal(b.Input)
			if err != nil {
				return nil, fmt.Errorf("encode input of tool %s: %w", b.Name, err)
			}
			start = map[string]any{"type": "tool_use", "id": b.ID, "name": b.Name, "input": map[string]any{}}
			delta = map[string]any{"type": "input_json_delta", "partial_json": string(args)}
		default:
			start = map[string]any{"type": "text", "text": ""}
			delta = map[string]any{"type": "text_delta", "text": b.Text}
		}
		events = append(events,
			sseEvent{"content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": start}},
			sseEvent{"content_block_delta", map[string]any{"type": "content_block_delta", "index": i, "delta": delta}},
			sseEvent{"content_block_stop", map[string]any{"type": "content_block_stop", "index": i}},
		)
	}
	events = append(events,
		sseEvent{"message_delta", map[string]any{
			"type":  "message_delta",
			"delta": map[string]any{"stop_reason": m.StopReason, "stop_sequence": nil},
			"usage": map[string]any{"output_tokens": m.Usage.OutputTokens},
		}},
		sseEvent{"message_stop", map[string]any{"type": "message_stop"}},
	)
	return events, nil
}

// shellJSON renders the message_start payload, whose stop_reason is null.
func shellJSON(m message) map[string]any {
	var out map[string]any
	enc, _ := json.Marshal(m) // plain structs and maps: cannot fail
	_ = json.Unmarshal(enc, &out)
	out["stop_reason"] = nil
	return out
}

type sseEvent struct {
	name string
	data any
}

func (e sseEvent) write(w io.Writer) error {
	data, err := json.Marshal(e.data)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", e.name, err)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "event: %s\ndata: %s\n\n", e.name, data)
	_, err = w.Write(buf.Bytes())
	return err
}

// flushWriter pushes every event to the client as it is written, so a
// client (or proxy) waiting on the stream sees it without buffering.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

func bashInput(command, description string) map[string]any {
	return map[string]any{"command": command, "description": description}
}
