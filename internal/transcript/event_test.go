package transcript

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		want []Event // Raw is not compared
	}{
		{
			name: "init",
			line: `{"type":"system","subtype":"init","cwd":"/workspace","session_id":"s1","model":"claude-sonnet-4-5","tools":["Bash"]}`,
			want: []Event{{Kind: KindInit, Subtype: "init", SessionID: "s1", Model: "claude-sonnet-4-5", Cwd: "/workspace"}},
		},
		{
			name: "text and tool call in one message",
			line: `{"type":"assistant","message":{"model":"m","content":[{"type":"text","text":"hi"},{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls"}}]},"session_id":"s1"}`,
			want: []Event{
				{Kind: KindText, SessionID: "s1", Model: "m", Text: "hi"},
				{Kind: KindToolUse, SessionID: "s1", Model: "m", Tool: "Bash", ToolUseID: "t1", ToolInput: json.RawMessage(`{"command":"ls"}`)},
			},
		},
		{
			name: "tool result as a string",
			line: `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"Exit code 1\nboom","is_error":true}]}}`,
			want: []Event{{Kind: KindToolResult, ToolUseID: "t1", ToolResult: "Exit code 1\nboom", IsError: true}},
		},
		{
			name: "tool result as blocks",
			line: `{"type":"user","message":{"content":[{"tool_use_id":"t2","type":"tool_result","content":[{"type":"text","text":"a"},{"type":"image","source":{}},{"type":"text","text":"b"}]}]},"parent_tool_use_id":"task1"}`,
			want: []Event{{Kind: KindToolResult, ToolUseID: "t2", ToolResult: "a\n[image]\nb", ParentToolUseID: "task1"}},
		},
		{
			name: "API error reported as assistant text",
			line: `{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error: 500 boom"}]},"error":"unknown","is_api_error_message":true}`,
			want: []Event{{Kind: KindText, Model: "<synthetic>", Text: "API Error: 500 boom", IsError: true}},
		},
		{
			name: "result",
			line: `{"type":"result","subtype":"error_during_execution","is_error":true,"result":"x","session_id":"s1"}`,
			want: []Event{{Kind: KindResult, Subtype: "error_during_execution", SessionID: "s1", Text: "x", IsError: true}},
		},
		{
			name: "other system line",
			line: `{"type":"system","subtype":"api_retry","attempt":1}`,
			want: []Event{{Kind: KindSystem, Subtype: "api_retry"}},
		},
		{
			name: "unknown type",
			line: `{"type":"stream_event","event":{"type":"message_start"}}`,
			want: []Event{{Kind: KindUnknown}},
		},
		{
			name: "fields of unexpected shape",
			line: `{"type":"assistant","message":"not an object","session_id":7}`,
			want: []Event{{Kind: KindUnknown}},
		},
		{
			name: "message without known blocks",
			line: `{"type":"user","message":{"content":"the prompt, replayed"}}`,
			want: []Event{{Kind: KindUnknown}},
		},
		{
			name: "unknown block types are dropped, known ones kept",
			line: `{"type":"assistant","message":{"content":[{"type":"server_tool_use"},{"type":"text","text":"ok"}]}}`,
			want: []Event{{Kind: KindText, Text: "ok"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLine([]byte(tt.line + "\n"))
			if err != nil {
				t.Fatalf("ParseLine: %v", err)
			}
			for i := range got {
				if string(got[i].Raw) != tt.line {
					t.Errorf("event %d Raw = %s, want the line", i, got[i].Raw)
				}
				got[i].Raw = nil
			}
			if !slices.EqualFunc(got, tt.want, eventEqual) {
				t.Errorf("ParseLine =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func eventEqual(a, b Event) bool {
	return reflect.DeepEqual(a, b)
}

func TestParseLineRejectsNonJSON(t *testing.T) {
	for _, line := range []string{"", "Warning: something", "[1,2]", "42", `"str"`, "null", `{"type":"result"`, "{} trailing"} {
		if _, err := ParseLine([]byte(line)); !errors.Is(err, ErrNotJSON) {
			t.Errorf("ParseLine(%q) error = %v, want ErrNotJSON", line, err)
		}
	}
}

func TestScanner(t *testing.T) {
	input := "garbage\n\n" +
		`{"type":"assistant","message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}` + "\n" +
		"more garbage\n" +
		`{"type":"result","subtype":"success"}` // no final newline
	sc := NewScanner(strings.NewReader(input))
	var kinds []Kind
	var texts []string
	for sc.Scan() {
		kinds = append(kinds, sc.Event().Kind)
		texts = append(texts, sc.Event().Text)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []Kind{KindText, KindText, KindResult}; !slices.Equal(kinds, want) {
		t.Errorf("kinds = %v, want %v", kinds, want)
	}
	if want := []string{"a", "b", ""}; !slices.Equal(texts, want) {
		t.Errorf("texts = %q, want %q", texts, want)
	}
	if sc.Skipped() != 2 {
		t.Errorf("Skipped() = %d, want 2", sc.Skipped())
	}
}

func TestScannerLongLine(t *testing.T) {
	big := strings.Repeat("x", 5<<20) // a tool result of 5 MB
	line := `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":"` + big + `"}]}}` + "\n"
	sc := NewScanner(strings.NewReader(line + `{"type":"result"}` + "\n"))
	if !sc.Scan() || len(sc.Event().ToolResult) != len(big) {
		t.Fatalf("first event not the 5 MB tool result (err %v)", sc.Err())
	}
	if !sc.Scan() || sc.Event().Kind != KindResult {
		t.Fatal("lost the line after the long one")
	}
}

// FuzzParseLine checks that no input panics, that a parsed line always
// yields events carrying it, and that re-encoding a valid line (other key
// order, no whitespace) does not change what it parses to.
func FuzzParseLine(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.jsonl")
	for _, name := range files {
		file, err := os.Open(name)
		if err != nil {
			f.Fatal(err)
		}
		sc := bufio.NewScanner(file)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			f.Add(slices.Clone(sc.Bytes()))
		}
		file.Close()
	}
	f.Add([]byte(`{"type":"assistant","message":{"content":[{"type":"tool_use","input":null}]}}`))
	f.Add([]byte(`{"type":"user","message":{"content":[{"type":"tool_result","content":[{"type":1}]}]}}`))
	f.Add([]byte(`{"type":"result","usage":"none","num_turns":"x"}`))
	f.Add([]byte("{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"\x1b[31m\"}]}}"))
	f.Fuzz(func(t *testing.T, line []byte) {
		evs, err := ParseLine(line)
		if err != nil {
			return
		}
		if len(evs) == 0 {
			t.Fatal("ParseLine returned no events and no error")
		}
		var v map[string]any
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("ParseLine accepted invalid JSON %q", line)
		}
		again, _ := json.Marshal(v)
		evs2, err := ParseLine(again)
		if err != nil {
			t.Fatalf("re-encoded line %s rejected: %v", again, err)
		}
		kinds := func(evs []Event) []Kind {
			var k []Kind
			for _, e := range evs {
				k = append(k, e.Kind)
			}
			return k
		}
		if !slices.Equal(kinds(evs), kinds(evs2)) {
			t.Fatalf("kinds %v became %v after re-encoding %s", kinds(evs), kinds(evs2), line)
		}
		// Rendering and summarizing any parsed event must not panic either.
		var s Summary
		r := Renderer{W: discard{}, Verbosity: 2, Color: true, Width: 20}
		for _, ev := range evs {
			r.Render(ev)
			s.Add(ev)
		}
		r.Finish(s)
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
