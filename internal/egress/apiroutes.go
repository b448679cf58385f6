package egress

import (
	"fmt"
	"net/url"
	"strings"
)

// APIRoute is one request the model-API endpoint forwards: exactly this
// method on exactly this path (any query string). Nothing else reaches the
// model API host with the real credential.
//
// The path may hold one "*", for APIs that name the model in the path (the
// Gemini API: /v1beta/models/*:streamGenerateContent; Bedrock:
// /model/*/invoke; Vertex: .../models/*:streamRawPredict). It stands for
// one model name and nothing more (isModelName): letters, digits, '.', '-',
// '_' and one '@', starting with a letter or digit, and at its end a ':'
// and a version number; never a '/' or '%'. So a pattern reaches only the
// method it names, on any model, and no other resource of the API.
type APIRoute struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Metered routes are model requests: each forwarded one counts
	// towards the run's turns, and its response's usage is metered.
	Metered bool `json:"metered,omitempty"`
	// NoTurn marks a metered route whose requests are not the agent's
	// turns: Bedrock's non-streaming InvokeModel, with which Claude Code
	// probes which models the account may use before its first turn.
	// Their cost still counts.
	NoTurn bool `json:"no_turn,omitempty"`
	// Upstream, if set, is where this route goes instead of the endpoint's
	// upstream: another host of the same provider (Bedrock's control
	// plane). A gateway, when configured, replaces it.
	Upstream string `json:"upstream,omitempty"`
}

func (r APIRoute) String() string { return r.Method + " " + r.Path }

// DefaultAPIRoutes are the model API's own paths an agent uses; nil for an
// unknown agent.
func DefaultAPIRoutes(agent string) []APIRoute {
	switch agent {
	case "claude", "":
		return []APIRoute{
			{Method: "POST", Path: "/v1/messages", Metered: true},
			{Method: "POST", Path: "/v1/messages/count_tokens"},
		}
	}
	return nil
}

// checkRoutes refuses a route list the endpoint could not match exactly.
func checkRoutes(routes []APIRoute) error {
	for _, r := range routes {
		if r.Method == "" || strings.ToUpper(r.Method) != r.Method || strings.ContainsFunc(r.Method, func(c rune) bool { return c < 'A' || c > 'Z' }) {
			return fmt.Errorf("model API route %q: the method must be upper-case letters, like POST", r)
		}
		if n := strings.Count(r.Path, "*"); n > 1 {
			return fmt.Errorf("model API route %q: the path may hold at most one * (a model name)", r)
		}
		if reason := pathProblem(strings.Replace(r.Path, "*", "m", 1)); reason != "" || r.Path == "/" {
			return fmt.Errorf("model API route %q: the path must be a plain absolute path like /v1/messages (%s)", r, reason)
		}
		if r.Upstream != "" {
			if _, err := parseUpstream(r.Upstream); err != nil {
				return fmt.Errorf("model API route %q: %w", r, err)
			}
		}
	}
	return nil
}

// pathProblem says what is wrong with a raw request path that no route
// could legitimately use, or "".
func pathProblem(raw string) string {
	switch {
	case !strings.HasPrefix(raw, "/"):
		return "the path does not start with /"
	case strings.Contains(raw, "%"):
		low := strings.ToLower(raw)
		if strings.Contains(low, "%2e") || strings.Contains(low, "%2f") || strings.Contains(low, "%5c") {
			return "the path has a percent-encoded dot, slash or backslash"
		}
		return "the path is percent-encoded"
	case strings.Contains(raw, "\\"):
		return "the path has a backslash"
	case strings.ContainsFunc(raw, func(c rune) bool { return c <= ' ' || c >= 0x7f }):
		return "the path has a space, control or non-ASCII character"
	}
	for _, seg := range strings.Split(raw[1:], "/") {
		if seg == "." || seg == ".." {
			return "the path has a . or .. segment"
		}
	}
	return ""
}

// matchRoute decides a request to the model-API endpoint from what the
// client sent on the wire (the request target, not the parsed and cleaned
// URL): origin-form only, no dot segments, no percent-encoding, and exactly
// a listed method and path. It returns the route, or why it is refused and
// the raw path for the audit log.
func matchRoute(method, requestURI string, routes []APIRoute) (route APIRoute, rawPath, refusal string) {
	rawPath, _, _ = strings.Cut(requestURI, "?")
	if !strings.HasPrefix(requestURI, "/") {
		return APIRoute{}, rawPath, fmt.Sprintf("request target %q is not a path (absolute-form or authority-form)", headerSafe(rawPath))
	}
	if p := pathProblem(rawPath); p != "" {
		return APIRoute{}, rawPath, p
	}
	pathKnown := false
	for _, r := range routes {
		if !pathMatches(r.Path, rawPath) {
			continue
		}
		pathKnown = true
		if r.Method == method {
			return r, rawPath, ""
		}
	}
	if pathKnown {
		return APIRoute{}, rawPath, fmt.Sprintf("method %s is not allowed on %s", headerSafe(method), rawPath)
	}
	return APIRoute{}, rawPath, fmt.Sprintf("%s is not a model API path", headerSafe(rawPath))
}

func routeList(routes []APIRoute) string {
	s := make([]string, len(routes))
	for i, r := range routes {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

// pathMatches reports whether a raw request path is the route's path, its
// "*" (if any) standing for one model name.
func pathMatches(pattern, raw string) bool {
	prefix, suffix, wild := strings.Cut(pattern, "*")
	if !wild {
		return pattern == raw
	}
	if len(raw) < len(prefix)+len(suffix) || !strings.HasPrefix(raw, prefix) || !strings.HasSuffix(raw, suffix) {
		return false
	}
	return isModelName(raw[len(prefix) : len(raw)-len(suffix)])
}

// isModelName reports whether s can be a model's name in a path, like
// gemini-2.5-flash, Bedrock's us.anthropic.claude-sonnet-4-5-20250929-v1:0
// or Vertex's claude-sonnet-4-5@20250929. A ':' may come only before the
// version number that ends a Bedrock id: after it only digits, so that a
// name never carries a method (x:generateContent:countTokens would reach
// generateContent through the countTokens route).
func isModelName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	name, version, versioned := strings.Cut(s, ":")
	if name == "" || versioned && (version == "" || strings.ContainsFunc(version, func(c rune) bool { return c < '0' || c > '9' })) {
		return false
	}
	if strings.Count(name, "@") > 1 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '-' && c != '_' && c != '@') {
			return false
		}
	}
	return true
}

// parseUpstream parses a model API upstream: an http:// or https:// URL
// with a host.
func parseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream must be an http:// or https:// URL with a host, got %q", raw)
	}
	return u, nil
}
