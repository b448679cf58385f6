package agent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// brief is an event in a line a test can compare.
func ocBrief(ev transcript.Event) string {
	s := string(ev.Kind)
	if ev.Subtype != "" {
		s += "/" + ev.Subtype
	}
	switch ev.Kind {
	case transcript.KindText, transcript.KindResult:
		if ev.Text != "" {
			s += " " + ev.Text
		}
	case transcript.KindToolUse:
		s += fmt.Sprintf(" %s %v %s", ev.Tool, ev.ToolUseID != "", ev.ToolInput)
	case transcript.KindToolResult:
		s += fmt.Sprintf(" %v %q", ev.ToolUseID != "", ev.ToolResult)
	}
	if ev.IsError {
		s += " (error)"
	}
	return s
}

func ocParseFile(t *testing.T, name string, parse func([]byte) ([]transcript.Event, error)) []transcript.Event {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []transcript.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		got, err := parse(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: line %q: %v", name, sc.Text(), err)
		}
		evs = append(evs, got...)
	}
	return evs
}

// The transcripts were recorded from the real opencode 1.18.33 driven by
// testkit.ChatServer (internal/testkit/openai_chat_opencode_test.go).
func TestParseOpencodeTranscripts(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{
			file: "opencode_demo.jsonl",
			want: []string{
				"system/step_start",
				"text I'll create a small Python script.",
				`tool_use write true {"content":"print(\"Hello from airlock\")\n","filePath":"/tmp/TestChatServerDrivesOpencode3225385414/001/hello.py"}`,
				`tool_result true "Wrote file successfully."`,
				"system/step_finish",
				"system/step_start",
				"text Let me run it.",
				`tool_use bash true {"command":"python3 hello.py","description":"Run hello.py"}`,
				`tool_result true "Hello from airlock\n"`,
				"system/step_finish",
				"system/step_start",
				"text It works. Committing.",
				`tool_use bash true {"command":"git add hello.py && git commit -m \"Add hello.py\"","description":"Commit hello.py"}`,
				"tool_result true \"[main f119e90] Add hello.py\\n 1 file changed, 1 insertion(+)\\n create mode 100644 hello.py\\n\"",
				"system/step_finish",
				"system/step_start",
				`text Created hello.py, which prints "Hello from airlock", and committed it.`,
				"system/step_finish",
				"result/success",
			},
		},
		{
			file: "opencode_tool_error.jsonl",
			want: []string{
				"system/step_start",
				`tool_use read true {"filePath":"/tmp/TestChatServerOpencodeToolError2834509215/001/missing.txt"}`,
				`tool_result true "File not found: /tmp/TestChatServerOpencodeToolError2834509215/001/missing.txt" (error)`,
				"system/step_finish",
				"system/step_start",
				"text The file does not exist.",
				"system/step_finish",
				"result/success",
			},
		},
		{
			file: "opencode_api_error.jsonl",
			want: []string{"result/error airlock test model: scripted failure (error)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			evs := ocParseFile(t, tt.file, parseOpencodeLine)
			var got []string
			for _, ev := range evs {
				got = append(got, ocBrief(ev))
				if !strings.HasPrefix(ev.SessionID, "ses_") {
					t.Errorf("event %s has session id %q", ocBrief(ev), ev.SessionID)
				}
				if len(ev.Raw) == 0 {
					t.Errorf("event %s lost its line", ocBrief(ev))
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseOpencodeOddLines(t *testing.T) {
	tests := []struct {
		line    string
		want    string
		wantErr bool
	}{
		{line: `not json`, wantErr: true},
		{line: ``, wantErr: true},
		{line: `{"type":"text","part":`, wantErr: true},
		{line: `{"type":"snapshot","sessionID":"ses_1"}`, want: "unknown"},
		{line: `{"type":5}`, want: "unknown"},
		{line: `{"type":"text","part":{"text":7}}`, want: "unknown"},
		{line: `{"type":"text","part":"hello"}`, want: "unknown"},
		{line: `{"type":"tool_use","part":{"tool":"bash","callID":"c1","state":{"status":"running","input":{"command":"ls"}}}}`, want: `tool_use bash true {"command":"ls"}`},
		{line: `{"type":"step_finish","part":{"reason":"length"}}`, want: "system/step_finish | result/length (error)"},
		{line: `{"type":"error","error":{"name":"ProviderAuthError","data":7}}`, want: "result/error ProviderAuthError (error)"},
		{line: `{"type":"reasoning","part":{"text":"hmm"}}`, want: "thinking"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			evs, err := parseOpencodeLine([]byte(tt.line))
			if tt.wantErr {
				if !errors.Is(err, transcript.ErrNotJSON) {
					t.Fatalf("err = %v, want ErrNotJSON", err)
				}
				return
			}
			if err != nil || len(evs) == 0 {
				t.Fatalf("got %v, %v", evs, err)
			}
			var got []string
			for _, ev := range evs {
				got = append(got, ocBrief(ev))
			}
			if strings.Join(got, " | ") != tt.want {
				t.Errorf("got %q, want %q", strings.Join(got, " | "), tt.want)
			}
		})
	}
}
