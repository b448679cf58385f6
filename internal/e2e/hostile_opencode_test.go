package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// An agent speaking Chat Completions that asks the model API for a stream
// without usage (stream_options.include_usage false) would spend without
// the meter seeing a token. The proxy asks for the usage whatever the
// agent sent, so the response reports it and the meter counts it.
func TestHostileChatStreamWithoutUsage(t *testing.T) {
	e := newEnv(t)
	e.ok("image", "build", "--agent", "opencode")
	const marker = "HOSTILE-NO-USAGE"
	body := `{"model":"gpt-5.4","stream":true,"stream_options":{"include_usage":false},"tools":[{"type":"function","function":{"name":"x","parameters":{"type":"object"}}}],"messages":[{"role":"user","content":"` + marker + `"}]}`
	srv := testkit.NewChatServer(testkit.Script{
		Name: "no-usage",
		Steps: []testkit.Step{{Tool: "bash", Input: map[string]any{
			"command":     "curl -sS -H 'Content-Type: application/json' -d '" + body + "' http://127.0.0.1:3129/chat/completions",
			"description": "Ask for a stream without usage",
		}}},
		FinalText: "Done.",
	})
	opencodeServe(e, srv)
	e.ok("run", "--agent", "opencode", "-m", "Go.", "--name", "no-usage")

	var seen bool
	for _, q := range srv.Requests() {
		if !bytes.Contains(q.Body, []byte(marker)) || bytes.Contains(q.Body, []byte(`"role":"tool"`)) {
			continue // opencode's own requests, and those carrying the curl's output
		}
		seen = true
		var req struct {
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		if err := json.Unmarshal(q.Body, &req); err != nil || !req.StreamOptions.IncludeUsage {
			t.Errorf("the agent's request reached the API without asking for usage: %s", q.Body)
		}
	}
	if !seen {
		t.Fatalf("the agent's own request never reached the server; transcript:\n%s", tail(e.ok("logs", "--raw").stdout, 20))
	}
	// The curl saw the usage chunk the proxy asked for on its behalf.
	if raw := e.ok("logs", "--raw").stdout; !strings.Contains(raw, `prompt_tokens`) {
		t.Errorf("the agent's stream carried no usage:\n%s", tail(raw, 20))
	}
}
