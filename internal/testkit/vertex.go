package testkit

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// VertexOptions configures a VertexServer.
type VertexOptions struct {
	Project string // the only project requests may name
	Region  string // the only location, e.g. us-east5 or global
	// Token says whether a bearer token is valid now (for example
	// GoogleTokenServer.Valid, or StaticToken).
	Token func(token string) bool
}

// StaticToken returns a Token check accepting exactly token.
func StaticToken(token string) func(string) bool {
	return func(t string) bool {
		return token != "" && subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1
	}
}

// VertexServer is a scripted Vertex AI endpoint for Anthropic's models
// (publishers/anthropic) that checks every request's bearer token, project
// and location. It answers
// POST /v1/projects/P/locations/R/publishers/anthropic/models/MODEL:streamRawPredict
// (the Anthropic Messages event stream), :rawPredict (an Anthropic message
// as JSON) and models/count-tokens:rawPredict, following a Script like
// Server. A recorded Request's Model is the model in the path. It is an
// http.Handler, so it can also be mounted in an httptest.Server.
type VertexServer struct {
	serving // Start and Close

	script Script
	opts   VertexOptions
	prefix string

	journal // Requests, Rejections, Sent
}

// NewVertexServer returns a server following s for opts.Project and
// opts.Region, accepting the tokens opts.Token accepts.
func NewVertexServer(s Script, opts VertexOptions) *VertexServer {
	return &VertexServer{script: s, opts: opts, prefix: newPrefix()}
}

// Start listens on addr and serves in the background until Close. It
// returns the base URL; ANTHROPIC_VERTEX_BASE_URL is it plus /v1.
func (s *VertexServer) Start(addr string) (string, error) {
	return s.start(addr, "vertex model server", s)
}

// writeGoogleError answers in the shape of Google's JSON errors.
func writeGoogleError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

// vertexPath is a parsed publishers/anthropic model path.
type vertexPath struct {
	project, region, model, method string
}

// ServeHTTP checks the token, project and location, then answers.
func (s *VertexServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest(w, r)
	if err != nil {
		writeGoogleError(w, http.StatusRequestEntityTooLarge, "INVALID_ARGUMENT", err.Error())
		return
	}
	reject := func(code int, status, msg, reason string) {
		s.journal.mu.Lock()
		s.rejections = append(s.rejections, Rejection{Method: r.Method, Path: r.URL.Path, Status: code, Code: status, Reason: reason, At: req.At})
		s.journal.mu.Unlock()
		writeGoogleError(w, code, status, msg)
	}
	const unauthenticated = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case r.Header.Get("Authorization") == "":
		reject(http.StatusUnauthorized, "UNAUTHENTICATED", unauthenticated, "no Authorization header")
		return
	case !ok || token == "" || s.opts.Token == nil || !s.opts.Token(token):
		reject(http.StatusUnauthorized, "UNAUTHENTICATED", unauthenticated, "invalid or expired bearer token")
		return
	}
	vp, ok := parseVertexModelPath(r.URL.Path)
	if !ok {
		reject(http.StatusNotFound, "NOT_FOUND", "The requested URL "+r.URL.Path+" was not found on this server.", "no such endpoint "+r.URL.Path)
		return
	}
	if vp.project != s.opts.Project {
		reject(http.StatusForbidden, "PERMISSION_DENIED",
			fmt.Sprintf("Permission 'aiplatform.endpoints.predict' denied on resource '//aiplatform.googleapis.com/projects/%s/locations/%s/publishers/anthropic/models/%s' (or it may not exist).", vp.project, vp.region, vp.model),
			"project "+vp.project+", want "+s.opts.Project)
		return
	}
	if vp.region != s.opts.Region {
		reject(http.StatusNotFound, "NOT_FOUND",
			fmt.Sprintf("Publisher Model `projects/%s/locations/%s/publishers/anthropic/models/%s` not found.", vp.project, vp.region, vp.model),
			"location "+vp.region+", want "+s.opts.Region)
		return
	}

	req.Model = vp.model
	req.Stream = vp.method == "streamRawPredict"
	parsed, parseErr := parseMessages(&req)
	s.journal.mu.Lock()
	s.requests = append(s.requests, req)
	s.seq++
	seq := s.seq
	s.journal.mu.Unlock()

	if r.Method != http.MethodPost {
		writeGoogleError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "use POST")
		return
	}
	if vp.model == "count-tokens" && vp.method == "rawPredict" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"input_tokens": estimateTokens(len(req.Body))})
		return
	}
	if vp.method != "rawPredict" && vp.method != "streamRawPredict" {
		writeGoogleError(w, http.StatusNotFound, "NOT_FOUND", "no scripted method "+vp.method)
		return
	}
	if parseErr != nil {
		writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "request body is not JSON: "+parseErr.Error())
		return
	}
	if parsed.AnthropicVersion == "" {
		writeError(w, Failure{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "anthropic_version: field required"})
		return
	}
	// The model's own errors reach the client as Anthropic errors.
	if s.script.Fail != nil && req.NumTools > 0 {
		writeError(w, *s.script.Fail)
		return
	}
	req.Model = vertexModelName(vp.model)
	m := scriptedReply(s.script, s.prefix, req, seq)
	s.journal.mu.Lock()
	s.sent = append(s.sent, Usage{Model: m.Model, Path: r.URL.Path, InputTokens: m.Usage.InputTokens, OutputTokens: m.Usage.OutputTokens})
	s.journal.mu.Unlock()
	if req.Stream {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		_ = m.writeSSE(flushWriter{w})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

// parseVertexModelPath reads
// /v1/projects/P/locations/R/publishers/anthropic/models/MODEL:METHOD.
func parseVertexModelPath(p string) (vertexPath, bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) != 9 || parts[0] != "v1" || parts[1] != "projects" || parts[3] != "locations" ||
		parts[5] != "publishers" || parts[6] != "anthropic" || parts[7] != "models" {
		return vertexPath{}, false
	}
	model, method, ok := strings.Cut(parts[8], ":")
	if !ok || model == "" {
		return vertexPath{}, false
	}
	return vertexPath{project: parts[2], region: parts[4], model: model, method: method}, true
}

// vertexModelName is the Anthropic model name for a Vertex model id
// (claude-sonnet-4-5@20250929 → claude-sonnet-4-5-20250929).
func vertexModelName(id string) string {
	if !strings.HasPrefix(id, "claude-") {
		return DefaultModel
	}
	return strings.Replace(id, "@", "-", 1)
}
