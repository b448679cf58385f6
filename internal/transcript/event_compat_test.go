package transcript

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// refParseLine is ParseLine as it was before it decoded each line once:
// every field looked up in maps, one json.Unmarshal per field. The new
// decoder must give the same events for what an agent can write.
func refParseLine(line []byte) ([]Event, error) {
	line = bytes.TrimSpace(line)
	var obj map[string]json.RawMessage
	if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &obj) != nil || obj == nil {
		return nil, ErrNotJSON
	}
	base := Event{
		Kind:            KindUnknown,
		Subtype:         str(obj["subtype"]),
		SessionID:       str(obj["session_id"]),
		ParentToolUseID: str(obj["parent_tool_use_id"]),
		Raw:             json.RawMessage(bytes.Clone(line)),
	}
	switch str(obj["type"]) {
	case "system":
		base.Kind = KindSystem
		if base.Subtype == "init" {
			base.Kind = KindInit
			base.Model = str(obj["model"])
			base.Cwd = str(obj["cwd"])
		}
	case "result":
		base.Kind = KindResult
		base.Text = str(obj["result"])
		base.IsError = boolean(obj["is_error"])
	case "assistant", "user":
		if evs := refMessageEvents(base, obj); len(evs) > 0 {
			return evs, nil
		}
	}
	return []Event{base}, nil
}

func refMessageEvents(base Event, line map[string]json.RawMessage) []Event {
	var msg map[string]json.RawMessage
	if json.Unmarshal(line["message"], &msg) != nil {
		return nil
	}
	base.Model = str(msg["model"])
	var blocks []map[string]json.RawMessage
	if json.Unmarshal(msg["content"], &blocks) != nil {
		return nil
	}
	// Claude Code reports a failed model API call as an assistant message
	// of its own making; those must read as errors, not as the agent's words.
	apiError := boolean(line["is_api_error_message"]) || base.Model == "<synthetic>" && str(line["error"]) != ""
	var evs []Event
	for _, b := range blocks {
		ev := base
		switch str(b["type"]) {
		case "text":
			ev.Kind = KindText
			ev.Text = str(b["text"])
			ev.IsError = apiError
		case "thinking":
			ev.Kind = KindThinking
			ev.Text = str(b["thinking"])
		case "tool_use":
			ev.Kind = KindToolUse
			ev.Tool = str(b["name"])
			ev.ToolUseID = str(b["id"])
			ev.ToolInput = b["input"]
		case "tool_result":
			ev.Kind = KindToolResult
			ev.ToolUseID = str(b["tool_use_id"])
			ev.ToolResult = refResultText(b["content"])
			ev.IsError = boolean(b["is_error"])
		default:
			continue
		}
		evs = append(evs, ev)
	}
	return evs
}

// resultText flattens a tool result's content: a string, or a list of
// blocks of which the text ones are kept.
func refResultText(content json.RawMessage) string {
	if s, ok := strOK(content); ok {
		return s
	}
	var blocks []map[string]json.RawMessage
	if json.Unmarshal(content, &blocks) != nil {
		return ""
	}
	var parts []string
	for _, b := range blocks {
		switch str(b["type"]) {
		case "text":
			parts = append(parts, str(b["text"]))
		case "image":
			parts = append(parts, "[image]")
		}
	}
	return strings.Join(parts, "\n")
}

func TestParseLineAsBefore(t *testing.T) {
	huge := strings.Repeat("x\\u001b[31m\\t", 1<<19) // 5.5 MiB of text with escapes
	tests := []struct{ name, line string }{
		{"huge tool result", `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":"` + huge + `"}]}}`},
		{"huge text", `{"type":"assistant","message":{"content":[{"type":"text","text":"` + huge + `"}]}}`},
		{"invalid UTF-8 in a string", "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"a\xff\xfeb\"}]}}"},
		{"invalid UTF-8 in a key", "{\"type\":\"result\",\"\xffresult\":\"x\",\"result\":\"y\"}"},
		{"escape sequences", `{"type":"assistant","message":{"content":[{"type":"text","text":"\u001b]8;;http://evil\u0007link\u001b]8;;\u0007 \u009b2J \u202eevil"}]}}`},
		{"raw control character in a string", "{\"type\":\"result\",\"result\":\"a\x1bb\"}"},
		{"deeply nested", `{"type":"user","message":{"content":[{"type":"tool_result","content":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}]}}`},
		{"deeply nested but valid", `{"type":"system","subtype":"init","x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`},
		{"duplicate keys, last wins", `{"type":"system","type":"result","result":"a","result":"b","is_error":false,"is_error":true}`},
		{"types of every wrong kind", `{"type":["result"],"subtype":1,"session_id":{},"parent_tool_use_id":true,"is_error":"true"}`},
		{"result with wrong typed fields", `{"type":"result","subtype":null,"result":5,"is_error":1}`},
		{"message null", `{"type":"assistant","message":null}`},
		{"content null", `{"type":"assistant","message":{"content":null}}`},
		{"content an object", `{"type":"assistant","message":{"content":{"type":"text","text":"x"}}}`},
		{"block not an object", `{"type":"assistant","message":{"content":[5,{"type":"text","text":"x"}]}}`},
		{"block null", `{"type":"assistant","message":{"content":[null,{"type":"text","text":"x"}]}}`},
		{"block fields wrong", `{"type":"assistant","message":{"model":7,"content":[{"type":"tool_use","id":1,"name":["Bash"],"input":"ls"},{"type":"thinking","thinking":{}}]}}`},
		{"tool result content wrong", `{"type":"user","message":{"content":[{"type":"tool_result","content":7,"is_error":"yes"},{"type":"tool_result","content":[{"type":"text","text":1},"x"]}]}}`},
		{"tool result blocks with null", `{"type":"user","message":{"content":[{"type":"tool_result","content":[null,{"type":"text","text":"a"}]}]}}`},
		{"synthetic API error", `{"type":"assistant","error":"rate_limit","message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error"}]}}`},
		{"unicode escapes", `{"type":"assistant","message":{"content":[{"type":"text","text":"\ud83d\ude00 \ud800 lone"}]}}`},
		{"trailing garbage", `{"type":"result"} {"type":"result"}`},
		{"not closed", `{"type":"result","result":"x"`},
		{"empty object", `{}`},
		{"whitespace around", " \t{\"type\":\"result\"}\r "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compareParse(t, []byte(tt.line))
		})
	}
}

// Keys now match ignoring case, as encoding/json matches them, the last
// one winning: the one way the decoder reads a line other than before. It
// gives the agent nothing it could not write with the keys spelt plainly.
func TestParseLineKeysIgnoreCase(t *testing.T) {
	got, err := ParseLine([]byte(`{"TYPE":"result","type":"system","Type":"assistant","Message":{"content":[{"Type":"text","TEXT":"x"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Kind != KindText || got[0].Text != "x" {
		t.Errorf("ParseLine = %+v, want the text x", got)
	}
}

// TestParseLineAsBeforeOnATranscript compares every line of a generated
// transcript, the shapes Claude Code writes.
func TestParseLineAsBeforeOnATranscript(t *testing.T) {
	var in bytes.Buffer
	if _, err := testkit.WriteTranscript(&in, 2<<20); err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(in.Bytes()) {
		compareParse(t, line)
	}
}

func compareParse(t *testing.T, line []byte) {
	t.Helper()
	got, err := parseLine(line) // without the result figures, which it did not read
	want, werr := refParseLine(line)
	if !errors.Is(err, werr) && (err == nil) != (werr == nil) {
		t.Fatalf("ParseLine error = %v, before %v", err, werr)
	}
	if !slices.EqualFunc(got, want, eventEqual) {
		t.Errorf("ParseLine(%.200q) =\n%+.300v\nbefore\n%+.300v", line, got, want)
	}
}
