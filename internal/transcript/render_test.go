package transcript

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/render/*.golden")

// render runs a transcript through a Renderer as `airlock logs` does.
func render(t *testing.T, input string, r *Renderer) string {
	t.Helper()
	var out strings.Builder
	r.W = &out
	sc := NewScanner(strings.NewReader(input))
	var s Summary
	for sc.Scan() {
		r.Render(sc.Event())
		s.Add(sc.Event())
	}
	s.Skipped = sc.Skipped()
	r.Finish(s)
	return out.String()
}

// TestRenderFixtures compares whole transcripts at each verbosity with
// reviewed output in testdata/render (go test -update rewrites them).
func TestRenderFixtures(t *testing.T) {
	fixtures, err := filepath.Glob("testdata/*.jsonl")
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, fixture := range fixtures {
		input, err := os.ReadFile(fixture)
		if err != nil {
			t.Fatal(err)
		}
		for v := range 3 {
			name := fmt.Sprintf("%s.v%d", strings.TrimSuffix(filepath.Base(fixture), ".jsonl"), v)
			t.Run(name, func(t *testing.T) {
				got := render(t, string(input), &Renderer{Verbosity: v})
				golden := filepath.Join("testdata", "render", name+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if got != string(want) {
					t.Errorf("output differs from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
				}
			})
		}
	}
}

func TestRender(t *testing.T) {
	const (
		init_  = `{"type":"system","subtype":"init","cwd":"/workspace","session_id":"s","model":"m"}`
		result = `{"type":"result","subtype":"success","is_error":false,"num_turns":3,"duration_ms":61000,"total_cost_usd":1.5,"usage":{"input_tokens":1500000,"output_tokens":999}}`
	)
	toolUse := func(id, name, input string) string {
		return `{"type":"assistant","message":{"content":[{"type":"tool_use","id":"` + id + `","name":"` + name + `","input":` + input + `}]}}`
	}
	quote := func(s string) string {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	toolResult := func(id, content string, isError bool) string {
		return fmt.Sprintf(`{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":%s,"content":%s,"is_error":%t}]}}`, quote(id), quote(content), isError)
	}
	text := func(s string) string {
		return fmt.Sprintf(`{"type":"assistant","message":{"content":[{"type":"text","text":%s}]}}`, quote(s))
	}
	tests := []struct {
		name      string
		verbosity int
		width     int
		color     bool
		lines     []string
		want      string
	}{
		{
			name:      "verbosity 0 shows only text",
			verbosity: 0,
			lines:     []string{init_, text("one"), toolUse("t1", "Bash", `{"command":"ls"}`), toolResult("t1", "boom", true), text("two"), result},
			want:      "one\ntwo\n",
		},
		{
			name:      "tool lines pick the telling field",
			verbosity: 1,
			lines: []string{
				init_,
				toolUse("t1", "Bash", `{"command":"git commit -m \"add hello\"","description":"Commit"}`),
				toolUse("t2", "Write", `{"file_path":"/workspace/hello.py","content":"print(1)"}`),
				toolUse("t3", "Edit", `{"file_path":"/etc/hosts","old_string":"a","new_string":"b"}`),
				toolUse("t4", "Grep", `{"pattern":"TODO"}`),
				toolUse("t5", "WebFetch", `{"url":"https://go.dev/doc","prompt":"summarize"}`),
				toolUse("t6", "TodoWrite", `{"todos":[{"content":"a"},{"content":"b"}]}`),
				toolUse("t7", "Bash", `{"command":"set -e\n  make   test"}`),
				toolUse("t8", "SomeNewTool", `{ "b": 1,  "a": [true] }`),
				toolUse("t9", "Bash", `{}`),
			},
			want: "▸ Bash  git commit -m \"add hello\"\n" +
				"▸ Write  hello.py\n" +
				"▸ Edit  /etc/hosts\n" +
				"▸ Grep  TODO\n" +
				"▸ WebFetch  https://go.dev/doc\n" +
				"▸ TodoWrite  2 todos\n" +
				"▸ Bash  set -e make test\n" +
				"▸ SomeNewTool  {\"b\":1,\"a\":[true]}\n" +
				"▸ Bash\n" +
				"\n… no result yet: the agent has not finished, or stopped without saying why\n",
		},
		{
			name:      "long lines are cut to the width",
			verbosity: 1,
			width:     20,
			lines:     []string{toolUse("t1", "Bash", `{"command":"echo aaaaaaaaaaaaaaaaaaaaaaaaa"}`), toolResult("t1", strings.Repeat("é", 40), true)},
			want:      "▸ Bash  echo aaaaaa…\n  ✗ ééééééééééééééé…\n\n… no result yet: the agent has not finished, or stopped without saying why\n",
		},
		{
			name:      "verbosity 2 shows results, cut to ten lines",
			verbosity: 2,
			lines:     []string{toolUse("t1", "Bash", `{"command":"seq 12"}`), toolResult("t1", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", false), result},
			want: "▸ Bash  seq 12\n    1\n    2\n    3\n    4\n    5\n    6\n    7\n    8\n    9\n    10\n    … 2 more lines\n" +
				"\n✓ the agent reports success · 3 turns · 1m1s · $1.50 · tokens 1.5M in, 999 out\n",
		},
		{
			name:      "verbosity 2 flags failed results",
			verbosity: 2,
			lines:     []string{toolUse("t1", "Bash", `{"command":"false"}`), toolResult("t1", "Exit code 1\nno such file", true), toolResult("t1", "", true)},
			want:      "▸ Bash  false\n  ✗ Exit code 1\n    no such file\n  ✗ (error)\n\n… no result yet: the agent has not finished, or stopped without saying why\n",
		},
		{
			name:      "escape sequences from the agent never reach the terminal",
			verbosity: 2,
			lines:     []string{text("\x1b]0;pwned\x07red \x1b[31mtext\u202e"), toolUse("t1", "Bash", `{"command":"printf '\u001b[2J'"}`), toolResult("t1", "\x1b[1Acleared\r\n", false)},
			want:      "red text\n\n▸ Bash  printf ''\n    cleared\n\n… no result yet: the agent has not finished, or stopped without saying why\n",
		},
		{
			name:      "escapes in every field: init, tool name, retry error, result subtype",
			verbosity: 2,
			lines: []string{
				`{"type":"system","subtype":"init","session_id":"s\u001b]52;c;eA==\u0007","model":"m\u009b2K","cwd":"/w\u001b[2K"}`,
				toolUse("t1", `Ba\u001b]0;pwned\u0007sh\u202e`, `{"x":"\u001b]52;c;eA==\u0007"}`),
				`{"type":"system","subtype":"api_retry","attempt":1,"max_retries":3,"error":"boom\u001b]0;t\u0007"}`,
				`{"type":"result","subtype":"error_\u001b]52;c;eA==\u0007x","is_error":true,"num_turns":1,"errors":["bad\u001b[2K"]}`,
			},
			want: "● session s · m · /w\n▸ Bash  {\"x\":\"\\u001b]52;c;eA==\\u0007\"}\n⟳ the model API failed (boom); retry 1 of 3\n\n✗ the agent reports failure (error_x) · 1 turn · 0s · $0\n  bad\n",
		},
		{
			name:      "color",
			verbosity: 1,
			color:     true,
			lines:     []string{toolUse("t1", "Read", `{"file_path":"x"}`), toolResult("t1", "EACCES", true), result},
			want: "\x1b[36m\x1b[1m▸ Read\x1b[0m  x\n  \x1b[31m✗ EACCES\x1b[0m\n" +
				"\n\x1b[32m✓ the agent reports success · 3 turns · 1m1s · $1.50 · tokens 1.5M in, 999 out\x1b[0m\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := render(t, strings.Join(tt.lines, "\n"), &Renderer{Verbosity: tt.verbosity, Width: tt.width, Color: tt.color})
			if got != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
}

// Text that arrives in pieces (the Gemini CLI's deltas) is shown whole,
// once: at the next event of another kind, at Flush, or at Finish.
func TestRenderJoinsTextPieces(t *testing.T) {
	piece := func(s string) Event { return Event{Kind: KindText, Subtype: "delta", Text: s} }
	shell := Event{Kind: KindToolUse, Tool: "run_shell_command", ToolUseID: "t1", ToolInput: json.RawMessage(`{"command":"python3 hello.py"}`)}
	list := Event{Kind: KindToolUse, Tool: "list_directory", ToolUseID: "t2", ToolInput: json.RawMessage(`{"dir_path":"/workspace/src"}`)}
	tests := []struct {
		name      string
		verbosity int
		events    []Event
		finish    bool
		want      string
	}{
		{"pieces make one line", 0, []Event{piece("I'll create a sma"), piece("ll Python script.")}, false, "I'll create a small Python script.\n"},
		{"a tool call ends the text", 1, []Event{piece("Let me "), piece("run it."), shell, list, piece("It "), piece("works.")}, false,
			"Let me run it.\n\n▸ run_shell_command  python3 hello.py\n▸ list_directory  src\n\nIt works.\n"},
		{"lines inside pieces", 0, []Event{piece("one\ntw"), piece("o\n")}, false, "one\ntwo\n"},
		{"a whole text after pieces stays apart", 0, []Event{piece("a"), {Kind: KindText, Text: "b"}}, false, "a\nb\n"},
		{"Finish shows what is held", 0, []Event{piece("last "), piece("words")}, true, "last words\n"},
		{"nothing held, nothing shown", 0, []Event{piece("")}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			r := &Renderer{W: &buf, Verbosity: tt.verbosity, cwd: "/workspace"}
			for _, ev := range tt.events {
				r.Render(ev)
			}
			if tt.finish {
				r.Finish(Summary{})
			} else {
				r.Flush()
			}
			r.Flush() // twice is harmless
			if got := buf.String(); got != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
	// A flood of pieces is not held without bound.
	var buf bytes.Buffer
	r := &Renderer{W: &buf}
	chunk := strings.Repeat("x", 64<<10)
	for range 20 {
		r.Render(piece(chunk))
	}
	if buf.Len() == 0 {
		t.Error("20 x 64 KiB of pieces all held back")
	}
}

// An agent that reports its time but no turns or cost (the Gemini CLI) is
// shown with its time only.
func TestFinishShowsOnlyWhatTheAgentReports(t *testing.T) {
	var buf bytes.Buffer
	r := &Renderer{W: &buf, Verbosity: 1}
	r.Finish(Summary{Outcome: OutcomeSucceeded, Final: true, Duration: 2300 * time.Millisecond, InputTokens: 31000, OutputTokens: 209})
	got := buf.String()
	if !strings.Contains(got, "success · 2.3s · tokens") || strings.Contains(got, "turns") || strings.Contains(got, "$") {
		t.Errorf("summary line %q", got)
	}
}

// An agent's own error events (Subtype "error", the Gemini CLI's) are
// shown: errors always, warnings from verbosity 1; an error before the
// result says why the run failed.
func TestRenderAgentErrors(t *testing.T) {
	errEv := Event{Kind: KindSystem, Subtype: "error", IsError: true, Text: "Model stream ended with empty response"}
	warn := Event{Kind: KindSystem, Subtype: "error", Text: "Agent execution blocked: x"}
	for _, tt := range []struct {
		verbosity int
		want      string
	}{
		{0, "✗ Model stream ended with empty response\n"},
		{1, "✗ Model stream ended with empty response\n! Agent execution blocked: x\n"},
	} {
		var buf bytes.Buffer
		r := &Renderer{W: &buf, Verbosity: tt.verbosity}
		r.Render(errEv)
		r.Render(warn)
		if buf.String() != tt.want {
			t.Errorf("verbosity %d: got %q, want %q", tt.verbosity, buf.String(), tt.want)
		}
	}
	var s Summary
	s.Add(errEv)
	s.Add(Event{Kind: KindResult, Subtype: "error", IsError: true})
	if s.Outcome != OutcomeFailed || s.ErrorText != errEv.Text {
		t.Errorf("summary %+v", s)
	}
}
