package testkit

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// GeminiModel is answered as modelVersion when a request's path names no
// model the server can read.
const GeminiModel = "gemini-2.5-flash"

// GeminiServer is a scripted Gemini API (generativelanguage.googleapis.com,
// v1beta) endpoint, enough for the Gemini CLI to follow a Script: it answers
// POST /v1beta/models/MODEL:streamGenerateContent?alt=sse as Server-Sent
// Events, :generateContent as JSON and :countTokens, the way the real API
// does. Step i answers the request whose conversation carries i function
// responses. Requests without tools (the CLI's side requests: the `auto`
// model's router, next-speaker checks, titles) get a short answer, in JSON
// when they ask for JSON. It is an http.Handler, so it can also be mounted
// in an httptest.Server.
type GeminiServer struct {
	serving // Start and Close

	script Script
	prefix string

	mu       sync.Mutex
	requests []Request
	sent     []GeminiUsage
	seq      int
}

// GeminiUsage is the usage a response reported (its last chunk's
// usageMetadata), for tests of metering.
type GeminiUsage struct {
	Model                           string
	Prompt, Cached, Candidates, All int
}

// Sent returns the usage of every generateContent and
// streamGenerateContent response sent so far, oldest first.
func (s *GeminiServer) Sent() []GeminiUsage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]GeminiUsage(nil), s.sent...)
}

// NewGeminiServer returns a server following s. Steps name the Gemini CLI's
// tools (run_shell_command, write_file, ...) with their arguments as Input.
func NewGeminiServer(s Script) *GeminiServer {
	return &GeminiServer{script: s, prefix: newPrefix()}
}

// Start listens on addr and serves in the background until Close. It
// returns the base URL to put in GOOGLE_GEMINI_BASE_URL (no /v1beta).
func (s *GeminiServer) Start(addr string) (string, error) {
	return s.start(addr, "gemini model server", s)
}

// Requests returns a copy of every request seen so far, oldest first.
func (s *GeminiServer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// ServeHTTP answers the v1beta models methods the Gemini CLI calls.
func (s *GeminiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		writeGeminiError(w, http.StatusRequestEntityTooLarge, "request too large: "+err.Error())
		return
	}
	model, method := parseGeminiPath(r.URL.Path)
	req := Request{
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Headers: r.Header.Clone(),
		Body:    body,
		Model:   model,
		Stream:  method == "streamGenerateContent",
		At:      time.Now(),
	}
	var parsed geminiRequest
	parseErr := json.Unmarshal(body, &parsed)
	if parseErr == nil {
		req.NumTools = parsed.countTools()
		req.NumToolResults = parsed.countFunctionResponses()
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.seq++
	seq := s.seq
	s.mu.Unlock()

	if model == "" || method == "" {
		writeGeminiError(w, http.StatusNotFound, "no scripted endpoint "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		writeGeminiError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	if parseErr != nil {
		writeGeminiError(w, http.StatusBadRequest, "request body is not JSON: "+parseErr.Error())
		return
	}
	switch method {
	case "countTokens":
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_ = json.NewEncoder(w).Encode(map[string]int{"totalTokens": estimateTokens(len(body))})
	case "generateContent", "streamGenerateContent":
		if s.script.Fail != nil && req.NumTools > 0 {
			f := s.script.Fail
			status := f.Status
			if status == 0 {
				status = http.StatusInternalServerError
			}
			writeGeminiError(w, status, f.Message)
			return
		}
		chunks := s.reply(req, &parsed, seq)
		last := chunks[len(chunks)-1]
		u := last["usageMetadata"].(map[string]any)
		cached, _ := u["cachedContentTokenCount"].(int)
		s.mu.Lock()
		s.sent = append(s.sent, GeminiUsage{
			Model:  last["modelVersion"].(string),
			Prompt: u["promptTokenCount"].(int), Cached: cached,
			Candidates: u["candidatesTokenCount"].(int), All: u["totalTokenCount"].(int),
		})
		s.mu.Unlock()
		if req.Stream {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			fw := flushWriter{w}
			for _, c := range chunks {
				data, _ := json.Marshal(c) // plain maps: cannot fail
				// The real API separates events with CRLF CRLF.
				if _, err := fmt.Fprintf(fw, "data: %s\r\n\r\n", data); err != nil {
					return
				}
			}
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		_ = json.NewEncoder(w).Encode(mergeChunks(chunks))
	default:
		writeGeminiError(w, http.StatusNotFound, "no scripted method "+method)
	}
}

// parseGeminiPath splits /v1beta/models/MODEL:METHOD.
func parseGeminiPath(p string) (model, method string) {
	dir, last := path.Split(p)
	if dir != "/v1beta/models/" && dir != "/v1/models/" {
		return "", ""
	}
	model, method, ok := strings.Cut(last, ":")
	if !ok || model == "" {
		return "", ""
	}
	return model, method
}

// geminiRequest is the part of a generateContent request the server reads.
type geminiRequest struct {
	Contents []struct {
		Role  string `json:"role"`
		Parts []struct {
			Text             string          `json:"text"`
			FunctionCall     json.RawMessage `json:"functionCall"`
			FunctionResponse json.RawMessage `json:"functionResponse"`
		} `json:"parts"`
	} `json:"contents"`
	Tools []struct {
		FunctionDeclarations []json.RawMessage `json:"functionDeclarations"`
	} `json:"tools"`
	GenerationConfig struct {
		ResponseMimeType   string          `json:"responseMimeType"`
		ResponseSchema     json.RawMessage `json:"responseSchema"`
		ResponseJSONSchema json.RawMessage `json:"responseJsonSchema"`
	} `json:"generationConfig"`
}

func (r *geminiRequest) countTools() int {
	n := 0
	for _, t := range r.Tools {
		n += len(t.FunctionDeclarations)
	}
	return n
}

// countFunctionResponses counts the distinct function responses: the
// Gemini CLI 0.61.0 sends each one twice in a resumed session's history.
func (r *geminiRequest) countFunctionResponses() int {
	seen := map[string]bool{}
	for _, c := range r.Contents {
		for _, p := range c.Parts {
			if len(p.FunctionResponse) > 0 && string(p.FunctionResponse) != "null" {
				seen[string(p.FunctionResponse)] = true
			}
		}
	}
	return len(seen)
}

// reply builds the scripted answer as the chunks the API streams: text in
// two pieces, a function call whole, usage on every chunk (the prompt's
// count from the first, the candidates' count growing to the last, which
// carries finishReason STOP).
func (s *GeminiServer) reply(req Request, parsed *geminiRequest, seq int) []map[string]any {
	id := fmt.Sprintf("%s%04d", s.prefix, seq)
	var parts []map[string]any
	if req.NumTools == 0 {
		if parsed.GenerationConfig.ResponseMimeType == "application/json" {
			parts = append(parts, map[string]any{"text": sideJSON(parsed)})
		} else {
			parts = append(parts, map[string]any{"text": "Scripted airlock run"})
		}
	} else {
		step := s.script.next(req)
		if s.script.Endless && req.NumToolResults >= len(s.script.Steps) {
			step = Step{Tool: "run_shell_command", Input: map[string]any{"command": fmt.Sprintf("echo airlock endless step %d", req.NumToolResults+1)}}
		}
		if step.Text != "" {
			// Two pieces, as the API streams text.
			half := len(step.Text) / 2
			for half > 0 && half < len(step.Text) && (step.Text[half]&0xc0) == 0x80 {
				half++ // never split a UTF-8 sequence
			}
			if half > 0 && half < len(step.Text) {
				parts = append(parts, map[string]any{"text": step.Text[:half]}, map[string]any{"text": step.Text[half:]})
			} else {
				parts = append(parts, map[string]any{"text": step.Text})
			}
		}
		if step.Tool != "" {
			args := step.Input
			if args == nil {
				args = map[string]any{}
			}
			parts = append(parts, map[string]any{
				"functionCall": map[string]any{"name": step.Tool, "args": args},
				// Opaque to the client, which sends it back with the call.
				"thoughtSignature": hex.EncodeToString([]byte("sig-" + id)),
			})
		}
		if len(parts) == 0 {
			parts = append(parts, map[string]any{"text": "Done."})
		}
	}

	prompt := estimateTokens(len(req.Body))
	// The conversation's prefix repeats from one turn to the next: the
	// API's implicit cache reports part of the prompt as cached (included
	// in promptTokenCount).
	cached := 0
	if req.NumToolResults > 0 {
		cached = prompt / 2
	}
	version := req.Model
	if version == "" {
		version = GeminiModel
	}
	var chunks []map[string]any
	out := 0
	for i, p := range parts {
		enc, _ := json.Marshal(p)
		out += estimateTokens(len(enc))
		usage := map[string]any{
			"promptTokenCount": prompt,
			"totalTokenCount":  prompt + out,
			"promptTokensDetails": []any{
				map[string]any{"modality": "TEXT", "tokenCount": prompt},
			},
		}
		cand := map[string]any{
			"content": map[string]any{"parts": []any{p}, "role": "model"},
			"index":   0,
		}
		usage["candidatesTokenCount"] = out
		if cached > 0 {
			usage["cachedContentTokenCount"] = cached
			usage["cacheTokensDetails"] = []any{map[string]any{"modality": "TEXT", "tokenCount": cached}}
		}
		if i == len(parts)-1 {
			cand["finishReason"] = "STOP"
		}
		chunks = append(chunks, map[string]any{
			"candidates":    []any{cand},
			"usageMetadata": usage,
			"modelVersion":  version,
			"responseId":    "resp_" + id,
		})
	}
	return chunks
}

// sideJSON answers a JSON-mode side request with an object the CLI
// accepts: the `auto` router picks flash, the next-speaker check hands the
// turn to the user, the loop detector sees no loop. Other schemas get an
// object with each required string property set.
func sideJSON(r *geminiRequest) string {
	schema := r.GenerationConfig.ResponseJSONSchema
	if len(schema) == 0 {
		schema = r.GenerationConfig.ResponseSchema
	}
	var sc struct {
		Properties map[string]struct {
			Type string `json:"type"`
			Enum []any  `json:"enum"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	_ = json.Unmarshal(schema, &sc)
	known := map[string]any{
		"reasoning":            "scripted airlock run",
		"model_choice":         "flash",
		"next_speaker":         "user",
		"confidence":           0,
		"is_loop":              false,
		"unproductive":         false,
		"summary":              "scripted airlock run",
		"title":                "Scripted airlock run",
		"complexity":           1,
		"complexity_reasoning": "scripted airlock run",
	}
	out := map[string]any{}
	for name, p := range sc.Properties {
		if v, ok := known[name]; ok {
			out[name] = v
			continue
		}
		switch {
		case len(p.Enum) > 0:
			out[name] = p.Enum[0]
		case strings.EqualFold(p.Type, "string"):
			out[name] = "scripted"
		case strings.EqualFold(p.Type, "number"), strings.EqualFold(p.Type, "integer"):
			out[name] = 0
		case strings.EqualFold(p.Type, "boolean"):
			out[name] = false
		}
	}
	enc, _ := json.Marshal(out)
	return string(enc)
}

// mergeChunks is the non-streaming response: all parts in one candidate,
// the last chunk's usage and finish reason.
func mergeChunks(chunks []map[string]any) map[string]any {
	if len(chunks) == 0 {
		return map[string]any{}
	}
	last := chunks[len(chunks)-1]
	var parts []any
	for _, c := range chunks {
		cand := c["candidates"].([]any)[0].(map[string]any)
		parts = append(parts, cand["content"].(map[string]any)["parts"].([]any)...)
	}
	lastCand := last["candidates"].([]any)[0].(map[string]any)
	return map[string]any{
		"candidates": []any{map[string]any{
			"content":      map[string]any{"parts": parts, "role": "model"},
			"finishReason": lastCand["finishReason"],
			"index":        0,
		}},
		"usageMetadata": last["usageMetadata"],
		"modelVersion":  last["modelVersion"],
		"responseId":    last["responseId"],
	}
}

// writeGeminiError answers in the shape of Google API errors.
func writeGeminiError(w http.ResponseWriter, status int, msg string) {
	statusName := map[int]string{
		400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
		405: "INVALID_ARGUMENT", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
		500: "INTERNAL", 503: "UNAVAILABLE",
	}[status]
	if statusName == "" {
		statusName = "UNKNOWN"
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]any{"code": status, "message": msg, "status": statusName},
	})
}

// GeminiDemoScript is DemoScript for the Gemini CLI's tools: write
// hello.py, run it, commit it, in dir (absolute: write_file wants an
// absolute path inside the workspace).
func GeminiDemoScript(dir string) Script {
	return Script{
		Name: "demo",
		Steps: []Step{
			{
				Text: "I'll create a small Python script.",
				Tool: "write_file",
				Input: map[string]any{
					"file_path": path.Join(dir, "hello.py"),
					"content":   "print(\"Hello from airlock\")\n",
				},
			},
			{Text: "Let me run it.", Tool: "run_shell_command", Input: map[string]any{"command": "python3 hello.py", "description": "Run hello.py"}},
			{Text: "It works. Committing.", Tool: "run_shell_command", Input: map[string]any{"command": `git add hello.py && git commit -m "Add hello.py"`, "description": "Commit hello.py"}},
		},
		FinalText: "Created hello.py, which prints \"Hello from airlock\", and committed it.",
	}
}
