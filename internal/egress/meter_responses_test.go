package egress

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/budget"
	"github.com/airlock-dev/airlock/internal/testkit"
)

func TestResponsesUsage(t *testing.T) {
	type obs struct {
		model string
		u     budget.Usage
	}
	long := `{"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","model":"gpt-5.5","output":[{"type":"message","content":[{"type":"output_text","text":"` +
		strings.Repeat("x", 1000) + `"}]}],"usage":{"input_tokens":900,"input_tokens_details":{"cached_tokens":600},"output_tokens":50,"total_tokens":950}}}`
	tests := []struct {
		name string
		data string
		want []obs
	}{
		{"created names the model", `{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","model":"gpt-5.5","status":"in_progress","usage":null}}`,
			[]obs{{"gpt-5.5", budget.Usage{}}}},
		{"completed", `{"type":"response.completed","response":{"model":"gpt-5.5","usage":{"input_tokens":1000,"input_tokens_details":{"cached_tokens":0},"output_tokens":20,"output_tokens_details":{"reasoning_tokens":8},"total_tokens":1020}}}`,
			[]obs{{"gpt-5.5", budget.Usage{Input: 1000, Output: 20}}}},
		{"cached is part of input", `{"type":"response.completed","response":{"model":"m","usage":{"input_tokens":1000,"input_tokens_details":{"cached_tokens":700},"output_tokens":20,"total_tokens":1020}}}`,
			[]obs{{"m", budget.Usage{Input: 300, CacheRead: 700, Output: 20}}}},
		{"incomplete is charged", `{"type":"response.incomplete","response":{"model":"m","status":"incomplete","usage":{"input_tokens":10,"output_tokens":4000,"total_tokens":4010}}}`,
			[]obs{{"m", budget.Usage{Input: 10, Output: 4000}}}},
		{"unexplained total is output", `{"type":"response.completed","response":{"model":"m","usage":{"input_tokens":10,"output_tokens":5,"total_tokens":100}}}`,
			[]obs{{"m", budget.Usage{Input: 10, Output: 90}}}},
		{"cached beyond the input is capped", `{"type":"response.completed","response":{"usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":50}}}}`,
			[]obs{{"", budget.Usage{CacheRead: 10}}}},
		{"negative counts count nothing", `{"type":"response.completed","response":{"usage":{"input_tokens":-10,"input_tokens_details":{"cached_tokens":-5},"output_tokens":-3}}}`,
			[]obs{{"", budget.Usage{}}}},
		{"non-streaming response", `{"id":"resp_1","object":"response","model":"gpt-5.4","output":[],"usage":{"input_tokens":7,"output_tokens":3,"total_tokens":10}}`,
			[]obs{{"gpt-5.4", budget.Usage{Input: 7, Output: 3}}}},
		{"a usage key inside text is not usage", `{"type":"response.output_text.delta","delta":"\"usage\":{\"input_tokens\":999999}"}`, nil},
		{"long event cut in the middle", long[:200] + long[len(long)-150:],
			[]obs{{"gpt-5.5", budget.Usage{Input: 300, CacheRead: 600, Output: 50}}}},
		{"delta", `{"type":"response.output_text.delta","item_id":"msg_1","delta":"hi"}`, nil},
		{"error event", `{"type":"error","code":"server_error","message":"boom"}`, nil},
		{"not json", `{"usage":`, nil},
		{"empty", ``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []obs
			responsesUsage([]byte(tt.data), func(m string, u budget.Usage) { got = append(got, obs{m, u}) })
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestResponsesUsageOfScriptedStream meters a stream as testkit's
// Responses server writes it (the one that drives the real Codex CLI):
// only the events responsesUsageEvent keeps, and exactly the usage the
// completed response reports.
func TestResponsesUsageOfScriptedStream(t *testing.T) {
	srv := testkit.NewResponsesServer(testkit.CodexDemoScript())
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	body := `{"model":"gpt-5.5","stream":true,"tools":[{"type":"function","name":"exec_command"}],"input":[{"type":"function_call_output","call_id":"c","output":"ok"}]}`
	resp, err := http.Post(base+"/responses", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var total budget.Usage
	var model string
	var kept []string
	var event []byte
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case bytes.HasPrefix(line, []byte("event: ")):
			event = bytes.Clone(line[len("event: "):])
		case bytes.HasPrefix(line, []byte("data: ")) && responsesUsageEvent(event):
			kept = append(kept, string(event))
			responsesUsage(line[len("data: "):], func(m string, u budget.Usage) {
				model = m
				total.Input += u.Input
				total.CacheRead += u.CacheRead
				total.Output += u.Output
			})
		}
	}
	if want := []string{"response.created", "response.in_progress", "response.completed"}; !reflect.DeepEqual(kept, want) {
		t.Errorf("kept events %q, want %q", kept, want)
	}
	in := len(body)/4 + 1 // the server's estimate, half of it cached after a tool round
	if want := (budget.Usage{Input: in - in/2, CacheRead: in / 2}); model != "gpt-5.5" || total.Input != want.Input || total.CacheRead != want.CacheRead || total.Output <= 0 {
		t.Errorf("metered %s %+v, want gpt-5.5 with input %d, cache read %d and some output", model, total, want.Input, want.CacheRead)
	}
}

// codexRoutes are Codex CLI's, as agent.Codex lists them.
var codexRoutes = []APIRoute{
	{Method: "POST", Path: "/responses", Metered: true},
	{Method: "POST", Path: "/responses/compact", Metered: true},
}

// TestResponsesThroughProxy: Codex's requests reach the Responses API
// with the real key only, and the meter charges exactly the usage the API
// reported, also for a response far longer than a kept SSE line (whose
// usage comes after the whole output, repeated).
func TestResponsesThroughProxy(t *testing.T) {
	srv := testkit.NewResponsesServer(testkit.Script{Steps: []testkit.Step{
		testkit.ExecStep("", "ls"),
		{Text: strings.Repeat("All of it. ", 60_000)}, // 660 kB of text, twice
	}})
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	u, _ := url.Parse(base)
	const real, placeholder = "sk-proj-real-key-for-test", "sk-proj-airlock-placeholder"
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	p := startProxy(t, Config{MeterFile: meterFile, API: &APIConfig{
		Upstream:    u,
		Headers:     map[string]string{"Authorization": "Bearer " + real},
		Strip:       []string{"Authorization", "X-Api-Key", "OpenAI-Organization", "OpenAI-Project"},
		Placeholder: placeholder,
		Routes:      codexRoutes,
		Usage:       "openai-responses",
	}})
	post := func(path string, results int) *http.Response {
		input := `[{"type":"message","role":"user","content":[{"type":"input_text","text":"go"}]}` +
			strings.Repeat(`,{"type":"function_call_output","call_id":"c","output":"ok"}`, results) + `]`
		body := `{"model":"gpt-5.5","stream":true,"tools":[{"type":"function","name":"exec_command"}],"input":` + input + `}`
		req, _ := http.NewRequest("POST", p.apiURL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+placeholder)
		req.Header.Set("OpenAI-Project", "proj_smuggled")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for i := range 2 {
		resp := post("/responses", i)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte("response.completed")) {
			t.Fatalf("request %d: status %d, %d bytes", i, resp.StatusCode, len(body))
		}
	}
	for _, path := range []string{"/chat/completions", "/v1/responses", "/responses/resp_1", "/files"} {
		if resp := post(path, 0); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", path, resp.StatusCode)
		}
	}
	p.records(t, 6)
	for i, r := range srv.Requests() {
		if r.Headers.Get("Authorization") != "Bearer "+real || r.Headers.Get("OpenAI-Project") != "" || r.Path != "/v1/responses" {
			t.Errorf("request %d reached the API as %s with Authorization %q, OpenAI-Project %q", i, r.Path, r.Headers.Get("Authorization"), r.Headers.Get("OpenAI-Project"))
		}
	}
	sent := srv.Sent()
	if len(sent) != 2 {
		t.Fatalf("the API answered %d requests, want 2", len(sent))
	}
	var want budget.Usage
	var cost float64
	for _, s := range sent {
		u := budget.Usage{Input: s.Input - s.Cached, CacheRead: s.Cached, Output: s.Output}
		want.Input += u.Input
		want.CacheRead += u.CacheRead
		want.Output += u.Output
		cost += budget.PriceOf("gpt-5.5").Cost(u)
	}
	if sent[1].Output < 100_000 {
		t.Fatalf("the long answer reported %d output tokens; the test needs a long one", sent[1].Output)
	}
	m, err := ReadMeter(meterFile)
	if err != nil {
		t.Fatal(err)
	}
	if m.ModelRequests != 2 || m.InputTokens != want.Input || m.CacheReadInputTokens != want.CacheRead || m.OutputTokens != want.Output {
		t.Errorf("meter %+v, want 2 requests and %+v", m, want)
	}
	if d := m.CostUSD - cost; d > 1e-9 || d < -1e-9 || cost <= 0 {
		t.Errorf("cost %v, want %v", m.CostUSD, cost)
	}
}
