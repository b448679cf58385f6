package agent

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// The testdata transcripts were printed by the real Codex CLI 0.171.0
// (`codex exec --json`) driven by testkit's scripted Responses server; see
// testkit's TestResponsesServerDrivesCodex and AIRLOCK_CODEX_RECORD.

func parseCodexFile(t *testing.T, name string) []transcript.Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var evs []transcript.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		got, err := ParseCodexLine(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: line %q: %v", name, sc.Text(), err)
		}
		evs = append(evs, got...)
	}
	return evs
}

// brief is an event as the tests compare it.
func brief(ev transcript.Event) string {
	parts := []string{string(ev.Kind)}
	for _, s := range []string{ev.SessionID, ev.Tool, string(ev.ToolInput), ev.ToolUseID, ev.Text, ev.ToolResult} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if ev.IsError {
		parts = append(parts, "ERROR")
	}
	return strings.Join(parts, " | ")
}

func TestParseCodexDemoTranscript(t *testing.T) {
	evs := parseCodexFile(t, "codex-demo.jsonl")
	want := []string{
		"init | 01a21acb-27e7-73f3-b2f8-d227006a3a81",
		"system",
		"text | I'll create a small Python script.",
		`tool_use | apply_patch | {"changes":"add /workspace/hello.py"} | item_1`,
		"tool_result | item_1 | add /workspace/hello.py",
		"text | Let me run it.",
		`tool_use | exec_command | {"cmd":"python3 hello.py"} | item_3`,
		"tool_result | item_3 | Hello from airlock\n",
		"text | It works. Committing.",
		`tool_use | exec_command | {"cmd":"git add hello.py \u0026\u0026 git commit -m \"Add hello.py\""} | item_5`,
		"tool_result | item_5 | [main 162cd3f] Add hello.py\n 1 file changed, 1 insertion(+)\n create mode 100644 hello.py\n",
		`text | Created hello.py, which prints "Hello from airlock", and committed it.`,
		"result",
	}
	var got []string
	for _, ev := range evs {
		got = append(got, brief(ev))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	last := evs[len(evs)-1]
	if last.Kind != transcript.KindResult || last.IsError || last.Subtype != "success" {
		t.Errorf("last event %+v, want a successful result", last)
	}
	// turn.completed: input_tokens 39263 of which cached 14845.
	if want := (transcript.Usage{Input: 39263 - 14845, CacheRead: 14845, Output: 356}); last.Usage == nil || *last.Usage != want {
		t.Errorf("usage %+v, want %+v", last.Usage, want)
	}
	s, err := transcript.SummarizeWith(bytes.NewReader(mustRead(t, "codex-demo.jsonl")), Codex{}.ParseLine)
	if err != nil {
		t.Fatal(err)
	}
	if s.Outcome != transcript.OutcomeSucceeded || s.SessionID != "01a21acb-27e7-73f3-b2f8-d227006a3a81" || s.InputTokens != 39263-14845 || s.CacheRead != 14845 || s.OutputTokens != 356 {
		t.Errorf("summary %+v", s)
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseCodexFailedRun(t *testing.T) {
	evs := parseCodexFile(t, "codex-fail.jsonl")
	var s transcript.Summary
	for _, ev := range evs {
		s.Add(ev)
	}
	last := evs[len(evs)-1]
	if last.Kind != transcript.KindResult || !last.IsError || last.Text != "scripted failure (invalid_request_error)" {
		t.Errorf("last event %+v, want a failed result naming the error", last)
	}
	if s.Outcome != transcript.OutcomeFailed || !strings.Contains(s.ErrorText, "scripted failure") {
		t.Errorf("summary outcome %q error %q, want failed with the API's message", s.Outcome, s.ErrorText)
	}
}

func TestParseCodexLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want string
	}{
		{"failed command is an error", `{"type":"item.completed","item":{"id":"i","type":"command_execution","command":"ls x","aggregated_output":"no x","exit_code":2,"status":"failed"}}`, "tool_result | i | no x | ERROR"},
		{"non-zero exit alone is an error", `{"type":"item.completed","item":{"id":"i","type":"command_execution","aggregated_output":"","exit_code":1,"status":"completed"}}`, "tool_result | i | ERROR"},
		{"exit code null while running", `{"type":"item.completed","item":{"id":"i","type":"command_execution","aggregated_output":"ok","exit_code":null,"status":"completed"}}`, "tool_result | i | ok"},
		{"double-quoted command unwrapped", `{"type":"item.started","item":{"id":"i","type":"command_execution","command":"/bin/bash -lc \"echo 'a' \\\\ b\""}}`, `tool_use | exec_command | {"cmd":"echo 'a' \\ b"} | i`},
		{"expansion kept wrapped", `{"type":"item.started","item":{"id":"i","type":"command_execution","command":"/bin/bash -lc \"echo '$HOME'\""}}`, `tool_use | exec_command | {"cmd":"/bin/bash -lc \"echo '$HOME'\""} | i`},
		{"item.updated adds nothing", `{"type":"item.updated","item":{"id":"i","type":"command_execution","command":"sleep 9"}}`, "unknown"},
		{"reasoning is thinking", `{"type":"item.completed","item":{"id":"r","type":"reasoning","text":"**Plan**"}}`, "thinking | **Plan**"},
		{"warning item", `{"type":"item.completed","item":{"id":"w","type":"error","message":"Model metadata for x not found"}}`, "text | Model metadata for x not found | ERROR"},
		{"stream error", `{"type":"error","message":"Reconnecting... 1/5"}`, "text | Reconnecting... 1/5 | ERROR"},
		{"API error body", `{"type":"error","message":"{\"error\":{\"message\":\"quota\",\"type\":\"insufficient_quota\"}}"}`, "text | quota (insufficient_quota) | ERROR"},
		{"JSON that is not an API error", `{"type":"error","message":"{\"x\":1}"}`, `text | {"x":1} | ERROR`},
		{"mcp call", `{"type":"item.started","item":{"id":"m","type":"mcp_tool_call","server":"docs","tool":"search","arguments":{"q":"x"},"status":"in_progress"}}`, `tool_use | docs.search | {"q":"x"} | m`},
		{"mcp failure", `{"type":"item.completed","item":{"id":"m","type":"mcp_tool_call","server":"docs","tool":"search","error":{"message":"boom"},"status":"failed"}}`, "tool_result | m | boom | ERROR"},
		{"web search", `{"type":"item.started","item":{"id":"s","type":"web_search","query":"go 1.26"}}`, `tool_use | web_search | {"query":"go 1.26"} | s`},
		{"failed patch", `{"type":"item.completed","item":{"id":"p","type":"file_change","changes":[{"path":"a.go","kind":"update"}],"status":"failed"}}`, "tool_result | p | update a.go | ERROR"},
		{"unknown type kept", `{"type":"turn.future","x":1}`, "unknown"},
		{"unknown item kept", `{"type":"item.completed","item":{"id":"t","type":"todo_list","items":[]}}`, "unknown"},
		{"wrong field types read as empty", `{"type":"item.completed","item":{"id":7,"type":"command_execution","aggregated_output":["x"],"exit_code":"1","changes":"no"}}`, "tool_result"},
		{"item not an object", `{"type":"item.completed","item":"x"}`, "unknown"},
		{"thread id of wrong type", `{"type":"thread.started","thread_id":{"a":1}}`, "init"},
		{"turn.failed without error", `{"type":"turn.failed"}`, "result | ERROR"},
		{"usage of wrong types", `{"type":"turn.completed","usage":{"input_tokens":"9","output_tokens":-4,"cached_input_tokens":{}}}`, "result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := ParseCodexLine([]byte(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1", len(evs))
			}
			if got := brief(evs[0]); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if string(evs[0].Raw) != tt.line {
				t.Errorf("Raw = %s, want the line", evs[0].Raw)
			}
		})
	}
}

func TestParseCodexLineNotJSON(t *testing.T) {
	for _, line := range []string{"", "WARNING: proceeding", "[1,2]", "{not json", `"x"`} {
		if _, err := ParseCodexLine([]byte(line)); !errors.Is(err, transcript.ErrNotJSON) {
			t.Errorf("ParseCodexLine(%q) error %v, want ErrNotJSON", line, err)
		}
	}
}

// TestCodexTranscriptRendersSafely: what the agent and its commands print
// reaches the terminal without escape sequences (a title change, a screen
// clear, colours), from a transcript the real CLI printed.
func TestCodexTranscriptRendersSafely(t *testing.T) {
	evs := parseCodexFile(t, "codex-hostile.jsonl")
	var out bytes.Buffer
	r := transcript.Renderer{W: &out, Verbosity: 2}
	var s transcript.Summary
	for _, ev := range evs {
		r.Render(ev)
		s.Add(ev)
	}
	r.Finish(s)
	got := out.String()
	if strings.ContainsAny(got, "\x1b\x07") {
		t.Errorf("rendered transcript carries terminal control bytes:\n%q", got)
	}
	for _, want := range []string{"▸ exec_command  ls no-such-file", "✗ ls: cannot access 'no-such-file'", "red", "cleared", "Done bold", "✓ the agent reports success · tokens 19k in, 189 out, 9.7k cache read"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered transcript lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "pwned") {
		t.Errorf("an OSC payload (window title) was shown:\n%s", got)
	}
}
