package agent

import (
	"errors"
	"strings"
)

// APIAuth is how the egress proxy forwards the agent's model traffic: the
// real credential becomes request headers the proxy adds, and the agent
// gets placeholders that are worthless outside the sandbox.
type APIAuth struct {
	// Headers are set on every request to the model API (the real secret).
	Headers map[string]string
	// Strip are request headers the proxy drops, whatever the agent put
	// in them, before it sets Headers.
	Strip []string
	// Env is what the agent sees instead of the credential.
	Env []string
	// Secret is the credential itself, for secret scanning.
	Secret string

	// Upstream is the provider's API, where the proxy forwards to unless a
	// gateway is configured.
	Upstream string
	// GatewayEnv names the host's environment variable that, when set,
	// names a gateway to use instead of Upstream.
	GatewayEnv string
	// Routes are the only requests forwarded.
	Routes []Route
	// Usage names the wire format the proxy meters responses in:
	// "anthropic", "openai-responses", "openai-chat", "gemini" or
	// "bedrock".
	Usage string
	// Cloud, when set, is a cloud provider whose credentials the host
	// fetches (internal/provider) and the proxy signs with; Headers and
	// Secret are then empty.
	Cloud *Cloud
}

// Cloud is a cloud model provider the agent reaches through the proxy.
type Cloud struct {
	Provider string // "bedrock" or "vertex"
	Region   string // the AWS region, or the Vertex location
	Project  string // the Google Cloud project (Vertex)
}

// Route is one request the model API endpoint forwards: exactly this method
// on exactly this path (any query string). Metered routes are model calls:
// each counts towards the run's turns and its usage is metered.
type Route struct {
	Method  string
	Path    string
	Metered bool
	// NoTurn: metered, but not one of the agent's turns (egress.APIRoute).
	NoTurn bool
	// Upstream, if set, is another host of the provider this route goes
	// to when no gateway is configured.
	Upstream string
}

// Placeholder values: shaped like the real thing so the CLI accepts them,
// and never valid.
const (
	PlaceholderAPIKey     = "sk-ant-api03-airlock-placeholder-injected-by-the-egress-proxy"
	PlaceholderOAuthToken = "sk-ant-oat01-airlock-placeholder-injected-by-the-egress-proxy"
)

// API implements Agent: the credential to inject, in Claude Code's own
// order of preference.
func (c Claude) API(lookup func(string) (string, bool)) (APIAuth, error) {
	switch {
	case truthy(lookup, "CLAUDE_CODE_USE_BEDROCK"):
		return claudeBedrock(lookup)
	case truthy(lookup, "CLAUDE_CODE_USE_VERTEX"):
		return claudeVertex(lookup)
	}
	a, err := c.auth(lookup)
	if err != nil {
		return APIAuth{}, err
	}
	a.Strip = []string{"X-Api-Key", "Authorization"}
	a.Upstream = "https://api.anthropic.com"
	a.GatewayEnv = "ANTHROPIC_BASE_URL"
	a.Routes = []Route{
		{Method: "POST", Path: "/v1/messages", Metered: true},
		{Method: "POST", Path: "/v1/messages/count_tokens"},
	}
	a.Usage = "anthropic"
	return a, nil
}

func (Claude) auth(lookup func(string) (string, bool)) (APIAuth, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	switch {
	case get("ANTHROPIC_AUTH_TOKEN") != "":
		tok := get("ANTHROPIC_AUTH_TOKEN")
		return APIAuth{
			Headers: map[string]string{"Authorization": "Bearer " + tok},
			Env:     []string{"ANTHROPIC_AUTH_TOKEN=" + PlaceholderOAuthToken},
			Secret:  tok,
		}, nil
	case get("ANTHROPIC_API_KEY") != "":
		key := get("ANTHROPIC_API_KEY")
		return APIAuth{
			Headers: map[string]string{"X-Api-Key": key},
			Env:     []string{"ANTHROPIC_API_KEY=" + PlaceholderAPIKey},
			Secret:  key,
		}, nil
	case get("CLAUDE_CODE_OAUTH_TOKEN") != "":
		tok := get("CLAUDE_CODE_OAUTH_TOKEN")
		return APIAuth{
			Headers: map[string]string{"Authorization": "Bearer " + tok},
			Env:     []string{"CLAUDE_CODE_OAUTH_TOKEN=" + PlaceholderOAuthToken},
			Secret:  tok,
		}, nil
	}
	return APIAuth{}, errors.New("no model credentials: export ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN), or store one with `airlock credentials set`")
}
