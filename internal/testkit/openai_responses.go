package testkit

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// ResponsesModel is answered when a Responses request names no model. Codex
// CLI looks the model up in its catalogue (tools, patch format), so it must
// be one it knows.
const ResponsesModel = "gpt-5.5"

// ResponsesServer is a scripted OpenAI Responses API endpoint (POST
// /v1/responses, streamed as server-sent events), the only wire API Codex
// CLI speaks. It follows a Script like Server does: step i answers the
// request whose input carries i tool outputs. A Step whose Input is a
// string is a custom (freeform) tool call, as Codex's apply_patch is; any
// other Input is a function call with Input as its JSON arguments.
type ResponsesServer struct {
	serving // Start and Close

	script Script
	prefix string // makes ids unique across servers

	mu       sync.Mutex
	requests []Request
	sent     []ResponsesSent
	seq      int
}

// ResponsesSent is the usage one response reported, for tests of
// metering. Input includes Cached, as the API counts them.
type ResponsesSent struct {
	Model                 string
	Input, Cached, Output int
}

// Sent returns the usage of every response sent so far, oldest first.
func (s *ResponsesServer) Sent() []ResponsesSent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ResponsesSent(nil), s.sent...)
}

// NewResponsesServer returns a server following s.
func NewResponsesServer(s Script) *ResponsesServer {
	return &ResponsesServer{script: s, prefix: newPrefix()}
}

// Start listens on addr and serves in the background until Close. It
// returns the base URL a client puts in front of /responses, ending in
// /v1 (Codex's base_url); for an unspecified address the URL names
// loopback and the caller substitutes the address its client can reach.
func (s *ResponsesServer) Start(addr string) (string, error) {
	url, err := s.start(addr, "responses server", s)
	if err != nil {
		return "", err
	}
	return url + "/v1", nil
}

// Requests returns a copy of every request seen so far, oldest first.
func (s *ResponsesServer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ServeHTTP answers POST /v1/responses.
func (s *ResponsesServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest(w, r)
	if err != nil {
		writeResponsesError(w, Failure{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Message: err.Error()})
		return
	}
	body := req.Body
	var parsed responsesRequest
	parseErr := json.Unmarshal(body, &parsed)
	if parseErr == nil {
		req.Model = parsed.Model
		req.Stream = parsed.Stream
		req.NumTools = len(parsed.Tools)
		req.NumToolResults = parsed.countToolOutputs()
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.seq++
	seq := s.seq
	s.mu.Unlock()

	if r.URL.Path != "/v1/responses" {
		writeResponsesError(w, Failure{Status: http.StatusNotFound, Type: "invalid_request_error", Message: "no scripted endpoint " + r.URL.Path})
		return
	}
	if r.Method != http.MethodPost {
		writeResponsesError(w, Failure{Status: http.StatusMethodNotAllowed, Type: "invalid_request_error", Message: "use POST"})
		return
	}
	if parseErr != nil {
		writeResponsesError(w, Failure{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "request body is not JSON: " + parseErr.Error()})
		return
	}
	if s.script.Fail != nil && req.NumTools > 0 {
		writeResponsesError(w, *s.script.Fail)
		return
	}
	resp := s.reply(req, seq)
	s.mu.Lock()
	s.sent = append(s.sent, ResponsesSent{
		Model: resp.Model, Input: resp.Usage.InputTokens,
		Cached: resp.Usage.InputTokensDetails.CachedTokens, Output: resp.Usage.OutputTokens,
	})
	s.mu.Unlock()
	w.Header().Set("X-Request-Id", "req_"+resp.ID)
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	_ = resp.writeSSE(flushWriter{w})
}

// nextResponses picks the step answering req, as Script.next does, but
// keeps an endless script going with Codex's shell tool.
func (s *ResponsesServer) nextStep(req Request) Step {
	sc := s.script
	if sc.Endless && req.NumTools > 0 && req.NumToolResults >= len(sc.Steps) {
		return ExecStep("", fmt.Sprintf("echo airlock endless step %d", req.NumToolResults+1))
	}
	return sc.next(req)
}

// ExecStep is a step calling Codex CLI's shell tool, exec_command, with
// cmd; text, if any, comes first as a message.
func ExecStep(text, cmd string) Step {
	return Step{Text: text, Tool: "exec_command", Input: map[string]any{"cmd": cmd}}
}

// reply builds the scripted response to a request.
func (s *ResponsesServer) reply(req Request, seq int) response {
	model := req.Model
	if model == "" {
		model = ResponsesModel
	}
	id := fmt.Sprintf("%s%04d", s.prefix, seq)
	resp := response{
		ID:                "resp_" + id,
		Object:            "response",
		CreatedAt:         time.Now().Unix(),
		Status:            "completed",
		Model:             model,
		ParallelToolCalls: true,
		ToolChoice:        "auto",
		Store:             false,
	}
	step := s.nextStep(req)
	if step.Text != "" {
		resp.Output = append(resp.Output, outputItem{
			Type: "message", ID: "msg_" + id, Status: "completed", Role: "assistant",
			Content: &[]outputContent{{Type: "output_text", Text: step.Text, Annotations: []any{}, Logprobs: []any{}}},
		})
	}
	if step.Tool != "" {
		switch in := step.Input.(type) {
		case string:
			resp.Output = append(resp.Output, outputItem{
				Type: "custom_tool_call", ID: "ctc_" + id, Status: "completed",
				CallID: "call_" + id, Name: step.Tool, Input: &in,
			})
		default:
			if in == nil {
				in = map[string]any{}
			}
			args, err := json.Marshal(in)
			if err != nil {
				args = []byte("{}") // a script's own bug; the agent sees an empty call
			}
			a := string(args)
			resp.Output = append(resp.Output, outputItem{
				Type: "function_call", ID: "fc_" + id, Status: "completed",
				CallID: "call_" + id, Name: step.Tool, Arguments: &a,
			})
		}
	}
	if len(resp.Output) == 0 {
		resp.Output = []outputItem{{
			Type: "message", ID: "msg_" + id, Status: "completed", Role: "assistant",
			Content: &[]outputContent{{Type: "output_text", Text: "Done.", Annotations: []any{}, Logprobs: []any{}}},
		}}
	}
	out := 0
	for _, it := range resp.Output {
		enc, _ := json.Marshal(it)
		out += len(enc)
	}
	in := estimateTokens(len(req.Body))
	// Codex sends the whole conversation every turn under one
	// prompt_cache_key, so after the first turn most of it is a cache hit;
	// cached tokens are part of input_tokens, as the API counts them.
	cached := 0
	if req.NumToolResults > 0 {
		cached = in / 2
	}
	resp.Usage = &responsesUsage{
		InputTokens:         in,
		InputTokensDetails:  inputTokensDetails{CachedTokens: cached},
		OutputTokens:        estimateTokens(out),
		OutputTokensDetails: outputTokensDetails{ReasoningTokens: 0},
		TotalTokens:         in + estimateTokens(out),
	}
	return resp
}

// writeResponsesError answers with the Responses API's error body.
func writeResponsesError(w http.ResponseWriter, f Failure) {
	if f.Status == 0 {
		f.Status = http.StatusInternalServerError
	}
	if f.Type == "" {
		f.Type = "server_error"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]any{"message": f.Message, "type": f.Type, "param": nil, "code": nil},
	})
}

// responsesRequest is the part of a Responses API request the server reads.
type responsesRequest struct {
	Model  string            `json:"model"`
	Stream bool              `json:"stream"`
	Tools  []json.RawMessage `json:"tools"`
	Input  json.RawMessage   `json:"input"` // a string or a list of items
}

// countToolOutputs counts the tool outputs in the input: Codex sends the
// whole conversation every turn (store is false), each call followed by
// its function_call_output or custom_tool_call_output item.
func (r responsesRequest) countToolOutputs() int {
	var items []struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(r.Input, &items) != nil {
		return 0 // a plain string prompt
	}
	n := 0
	for _, it := range items {
		if it.Type == "function_call_output" || it.Type == "custom_tool_call_output" {
			n++
		}
	}
	return n
}

// response is a Responses API response object.
type response struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	CreatedAt         int64           `json:"created_at"`
	Status            string          `json:"status"`
	Error             any             `json:"error"`
	IncompleteDetails any             `json:"incomplete_details"`
	Instructions      any             `json:"instructions"`
	MaxOutputTokens   any             `json:"max_output_tokens"`
	Model             string          `json:"model"`
	Output            []outputItem    `json:"output"`
	ParallelToolCalls bool            `json:"parallel_tool_calls"`
	PreviousResponse  any             `json:"previous_response_id"`
	Store             bool            `json:"store"`
	ToolChoice        string          `json:"tool_choice"`
	Tools             []any           `json:"tools"`
	Usage             *responsesUsage `json:"usage"`
}

type outputItem struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Status string `json:"status"`
	// message
	// Content is a pointer so that a message's is always present, empty
	// while the message streams: Codex drops the text deltas of a message
	// item it cannot decode.
	Role    string           `json:"role,omitempty"`
	Content *[]outputContent `json:"content,omitempty"`
	// function_call and custom_tool_call
	CallID    string  `json:"call_id,omitempty"`
	Name      string  `json:"name,omitempty"`
	Arguments *string `json:"arguments,omitempty"` // function_call
	Input     *string `json:"input,omitempty"`     // custom_tool_call
}

type outputContent struct {
	Type        string `json:"type"`
	Annotations []any  `json:"annotations"`
	Logprobs    []any  `json:"logprobs"`
	Text        string `json:"text"`
}

type responsesUsage struct {
	InputTokens         int                 `json:"input_tokens"`
	InputTokensDetails  inputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int                 `json:"output_tokens"`
	OutputTokensDetails outputTokensDetails `json:"output_tokens_details"`
	TotalTokens         int                 `json:"total_tokens"`
}

type inputTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

type outputTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// writeSSE streams resp as the Responses API does: the response shell
// (created, in_progress), each output item as added, its content or
// arguments as deltas and done, the item done, then response.completed
// carrying the whole response with its usage. Every event's data names its
// type and a sequence number.
func (resp response) writeSSE(w io.Writer) error {
	seq := 0
	emit := func(typ string, fields map[string]any) error {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		return sseEvent{typ, fields}.write(w)
	}
	shell := resp
	shell.Status = "in_progress"
	shell.Output = []outputItem{}
	shell.Usage = nil
	for _, typ := range []string{"response.created", "response.in_progress"} {
		if err := emit(typ, map[string]any{"response": shell}); err != nil {
			return err
		}
	}
	for i, it := range resp.Output {
		if err := writeItemSSE(emit, i, it); err != nil {
			return err
		}
	}
	return emit("response.completed", map[string]any{"response": resp})
}

func writeItemSSE(emit func(string, map[string]any) error, index int, it outputItem) error {
	added := it
	added.Status = "in_progress"
	var events []struct {
		typ    string
		fields map[string]any
	}
	add := func(typ string, fields map[string]any) {
		fields["output_index"] = index
		events = append(events, struct {
			typ    string
			fields map[string]any
		}{typ, fields})
	}
	switch it.Type {
	case "message":
		added.Content = &[]outputContent{}
		add("response.output_item.added", map[string]any{"item": added})
		for ci, c := range *it.Content {
			empty := c
			empty.Text = ""
			add("response.content_part.added", map[string]any{"item_id": it.ID, "content_index": ci, "part": empty})
			add("response.output_text.delta", map[string]any{"item_id": it.ID, "content_index": ci, "delta": c.Text, "logprobs": []any{}})
			add("response.output_text.done", map[string]any{"item_id": it.ID, "content_index": ci, "text": c.Text, "logprobs": []any{}})
			add("response.content_part.done", map[string]any{"item_id": it.ID, "content_index": ci, "part": c})
		}
	case "function_call":
		empty := ""
		added.Arguments = &empty
		add("response.output_item.added", map[string]any{"item": added})
		add("response.function_call_arguments.delta", map[string]any{"item_id": it.ID, "delta": *it.Arguments})
		add("response.function_call_arguments.done", map[string]any{"item_id": it.ID, "arguments": *it.Arguments})
	case "custom_tool_call":
		empty := ""
		added.Input = &empty
		add("response.output_item.added", map[string]any{"item": added})
		add("response.custom_tool_call_input.delta", map[string]any{"item_id": it.ID, "delta": *it.Input})
		add("response.custom_tool_call_input.done", map[string]any{"item_id": it.ID, "input": *it.Input})
	}
	add("response.output_item.done", map[string]any{"item": it})
	for _, e := range events {
		if err := emit(e.typ, e.fields); err != nil {
			return err
		}
	}
	return nil
}

// CodexDemoScript is DemoScript for Codex CLI: it writes hello.py with the
// apply_patch tool (a freeform patch, path relative to the working
// directory), runs it and commits it with exec_command.
func CodexDemoScript() Script {
	return Script{
		Name: "codex-demo",
		Steps: []Step{
			{
				Text:  "I'll create a small Python script.",
				Tool:  "apply_patch",
				Input: "*** Begin Patch\n*** Add File: hello.py\n+print(\"Hello from airlock\")\n*** End Patch\n",
			},
			ExecStep("Let me run it.", "python3 hello.py"),
			ExecStep("It works. Committing.", `git add hello.py && git commit -m "Add hello.py"`),
		},
		FinalText: "Created hello.py, which prints \"Hello from airlock\", and committed it.",
	}
}
