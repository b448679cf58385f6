package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// The transcripts in testdata were written by the real Gemini CLI 0.61.0
// against testkit's scripted Gemini API (paths replaced by /workspace).

func parseGeminiFile(t *testing.T, name string) []transcript.Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var evs []transcript.Event
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		got, err := Gemini{}.ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(%s): %v", line, err)
		}
		evs = append(evs, got...)
	}
	return evs
}

func TestGeminiParseSuccess(t *testing.T) {
	evs := parseGeminiFile(t, "gemini_success.jsonl")
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, string(ev.Kind))
	}
	want := "init unknown text text tool_use tool_result text text tool_use tool_result text text tool_use tool_result text text result"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("kinds\n got %s\nwant %s", got, want)
	}
	if ev := evs[0]; ev.SessionID != "3bbfa8f1-ced6-4b9b-8d07-46f5bd270703" || ev.Model != "gemini-2.5-flash" {
		t.Errorf("init = %+v", ev)
	}
	if ev := evs[2]; ev.Text != "I'll create a sma" || ev.Subtype != "delta" {
		t.Errorf("first text piece = %q subtype %q", ev.Text, ev.Subtype)
	}
	w := evs[4]
	var in map[string]string
	if err := json.Unmarshal(w.ToolInput, &in); err != nil {
		t.Fatal(err)
	}
	if w.Tool != "write_file" || w.ToolUseID == "" || in["file_path"] != "/workspace/hello.py" || in["content"] != "print(\"Hello from airlock\")\n" {
		t.Errorf("tool_use = %+v (%+v)", w, in)
	}
	if r := evs[9]; r.ToolUseID != evs[8].ToolUseID || r.ToolResult != "Hello from airlock" || r.IsError {
		t.Errorf("tool_result = %+v", r)
	}
	res := evs[len(evs)-1]
	want2 := transcript.Usage{Input: 31029, Output: 222, CacheRead: 18795}
	if res.IsError || res.Subtype != "success" || res.Usage == nil || *res.Usage != want2 || res.Duration != 1276*time.Millisecond {
		t.Errorf("result = %+v usage %+v", res, res.Usage)
	}
}

func TestGeminiParseErrors(t *testing.T) {
	evs := parseGeminiFile(t, "gemini_tool_error.jsonl")
	var failed []transcript.Event
	for _, ev := range evs {
		if ev.Kind == transcript.KindToolResult && ev.IsError {
			failed = append(failed, ev)
		}
	}
	if len(failed) != 1 || !strings.Contains(failed[0].ToolResult, "File not found: /workspace/missing.txt") {
		t.Errorf("failed tool results = %+v", failed)
	}

	evs = parseGeminiFile(t, "gemini_api_error.jsonl")
	res := evs[len(evs)-1]
	if res.Kind != transcript.KindResult || !res.IsError || res.Subtype != "error" || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "scripted failure") {
		t.Errorf("result = %+v", res)
	}
}

func TestGeminiParseOddLines(t *testing.T) {
	tests := []struct {
		line string
		kind transcript.Kind
		err  bool
	}{
		{`not json`, "", true},
		{``, "", true},
		{`{"type":"something_new","x":1}`, transcript.KindUnknown, false},
		{`{"type":"message","role":"user","content":"hi"}`, transcript.KindUnknown, false},
		{`{"type":"message","role":"assistant","content":42}`, transcript.KindUnknown, false},
		{`{"type":"error","severity":"error","message":"Loop detected"}`, transcript.KindSystem, false},
		{`{"type":"result","status":"success","stats":{"input_tokens":-5,"output_tokens":-1,"cached":-3,"duration_ms":-9}}`, transcript.KindResult, false},
	}
	for _, tt := range tests {
		evs, err := Gemini{}.ParseLine([]byte(tt.line))
		if tt.err {
			if !errors.Is(err, transcript.ErrNotJSON) {
				t.Errorf("ParseLine(%q) error %v, want ErrNotJSON", tt.line, err)
			}
			continue
		}
		if err != nil || len(evs) != 1 || evs[0].Kind != tt.kind || string(evs[0].Raw) != tt.line {
			t.Errorf("ParseLine(%q) = %+v, %v; want one %s event keeping the line", tt.line, evs, err, tt.kind)
			continue
		}
		if u := evs[0].Usage; u != nil && (u.Input < 0 || u.Output < 0 || u.CacheRead < 0 || evs[0].Duration < 0) {
			t.Errorf("negative counts through: %+v", u)
		}
	}
}

func TestGeminiCommand(t *testing.T) {
	o := Options{Model: "gemini-2.5-flash", SessionID: "11111111-2222-4333-8444-555555555555", PromptPath: "/p", LogPath: "/l", StderrPath: "/e"}
	argv := Gemini{}.Command(o)
	if argv[0] != "/bin/sh" || argv[3] != "airlock-agent" || !slices.Equal(argv[4:7], []string{"/p", "/l", "/e"}) {
		t.Fatalf("argv = %q", argv)
	}
	wantArgs := []string{"--output-format=stream-json", "--approval-mode=yolo", "--skip-trust", "--session-id=" + o.SessionID, "--model=gemini-2.5-flash"}
	if !slices.Equal(argv[7:], wantArgs) {
		t.Errorf("args = %q, want %q", argv[7:], wantArgs)
	}
	o.Resume = true
	if argv := (Gemini{}).Interactive(o); !slices.Contains(argv, "--resume="+o.SessionID) || slices.Contains(argv, "--output-format=stream-json") || argv[0] != "gemini" {
		t.Errorf("interactive = %q", argv)
	}
	for _, kv := range (Gemini{}).Env(o) {
		if strings.Contains(kv, "KEY") {
			t.Errorf("env carries a key: %s", kv)
		}
	}
	if !slices.Contains(Gemini{}.Env(o), "GOOGLE_GEMINI_BASE_URL="+APIBaseURL) {
		t.Errorf("env does not point the CLI at the proxy: %q", Gemini{}.Env(o))
	}
}

func TestGeminiAPI(t *testing.T) {
	lookup := func(env map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	g := Gemini{}
	if g.HasCredentials(lookup(nil)) || g.HasCredentials(lookup(map[string]string{"GEMINI_API_KEY": " "})) {
		t.Error("credentials without a key")
	}
	if _, err := g.API(lookup(nil)); err == nil {
		t.Error("API without a key")
	}
	a, err := g.API(lookup(map[string]string{"GEMINI_API_KEY": " AIza-real \n"}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Headers, map[string]string{"x-goog-api-key": "AIza-real"}) || a.Secret != "AIza-real" || a.Usage != "gemini" {
		t.Errorf("api = %+v", a)
	}
	if !slices.Contains(a.Strip, "X-Goog-Api-Key") || !slices.Contains(a.Strip, "Authorization") {
		t.Errorf("strip = %q", a.Strip)
	}
	for _, kv := range a.Env {
		if strings.Contains(kv, "AIza-real") {
			t.Errorf("sandbox env carries the key: %s", kv)
		}
	}
	if a.Upstream != "https://generativelanguage.googleapis.com" || !slices.Equal(g.DefaultAllow(), []string{"generativelanguage.googleapis.com"}) {
		t.Errorf("upstream %q allow %q", a.Upstream, g.DefaultAllow())
	}
	metered := 0
	for _, r := range a.Routes {
		if !strings.HasPrefix(r.Path, "/v1beta/models/*:") || r.Method != "POST" {
			t.Errorf("route %+v", r)
		}
		if r.Metered {
			metered++
		}
	}
	if metered != 2 {
		t.Errorf("routes %+v: want streamGenerateContent and generateContent metered", a.Routes)
	}
}

func TestGeminiSeed(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, ".gemini")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A resumed session's settings are merged into.
	if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte(`{"model":{"name":"x"},"security":{"auth":{"selectedType":"oauth-personal"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Gemini{}).Seed(home, SeedOptions{Workdir: "/workspace"}, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Model    map[string]any
		Security struct {
			Auth        struct{ SelectedType string }
			FolderTrust struct{ Enabled *bool }
		}
		Privacy   struct{ UsageStatisticsEnabled *bool }
		Telemetry struct{ Enabled *bool }
		General   struct{ EnableAutoUpdate, EnableAutoUpdateNotification *bool }
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	off := func(b *bool) bool { return b != nil && !*b }
	if s.Security.Auth.SelectedType != "gemini-api-key" || !off(s.Security.FolderTrust.Enabled) || !off(s.Privacy.UsageStatisticsEnabled) ||
		!off(s.Telemetry.Enabled) || !off(s.General.EnableAutoUpdate) || !off(s.General.EnableAutoUpdateNotification) || s.Model["name"] != "x" {
		t.Errorf("settings.json = %s", data)
	}
}

// A Gemini transcript summarizes like any other: the final answer is the
// text after the last tool call, its pieces joined; usage and outcome come
// from the result line.
func TestGeminiSummary(t *testing.T) {
	for _, tt := range []struct {
		file, outcome, result, errText string
	}{
		{"gemini_success.jsonl", transcript.OutcomeSucceeded, `Created hello.py, which prints "Hello from airlock", and committed it.`, ""},
		{"gemini_tool_error.jsonl", transcript.OutcomeSucceeded, `Created hello.py, which prints "Hello from airlock", and committed it.`, ""},
		{"gemini_api_error.jsonl", transcript.OutcomeFailed, "", "scripted failure"},
	} {
		f, err := os.Open(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		s, err := transcript.SummarizeWith(f, Gemini{}.ParseLine)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if s.Outcome != tt.outcome || s.Result != tt.result || !strings.Contains(s.ErrorText, tt.errText) || s.Model != "gemini-2.5-flash" || s.SessionID == "" {
			t.Errorf("%s: summary = %+v", tt.file, s)
		}
		if tt.outcome == transcript.OutcomeSucceeded && (s.InputTokens == 0 || s.OutputTokens == 0 || s.CacheRead == 0 || s.Duration == 0) {
			t.Errorf("%s: usage not summed: %+v", tt.file, s)
		}
	}
}
