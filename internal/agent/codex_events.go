package agent

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// Codex CLI's `codex exec --json` prints one JSON object per line:
//
//	{"type":"thread.started","thread_id":"…"}
//	{"type":"turn.started"}
//	{"type":"item.started","item":{"id":"item_3","type":"command_execution","command":"/bin/bash -lc 'ls'",…}}
//	{"type":"item.completed","item":{"id":"item_3","type":"command_execution","aggregated_output":"…","exit_code":0,"status":"completed"}}
//	{"type":"item.completed","item":{"id":"item_4","type":"agent_message","text":"…"}}
//	{"type":"turn.completed","usage":{"input_tokens":…,"cached_input_tokens":…,"output_tokens":…}}
//
// A turn ends with turn.completed or turn.failed; errors on the way are
// {"type":"error","message":…}. Items that run something (commands, file
// changes, MCP calls, web searches) are announced by item.started and
// finished by item.completed under the same id, which becomes the tool
// call's id.

// ParseCodexLine turns one line of `codex exec --json` output into
// normalized events. Like transcript.ParseLine it fails only on a line that
// is not a JSON object; unknown types and fields of unexpected type are
// tolerated (the line is the agent's output: untrusted).
func ParseCodexLine(line []byte) ([]transcript.Event, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, transcript.ErrNotJSON
	}
	var l codexLine
	if err := json.Unmarshal(line, &l); err != nil {
		return nil, transcript.ErrNotJSON
	}
	base := transcript.Event{Kind: transcript.KindUnknown, Raw: json.RawMessage(bytes.Clone(line))}
	switch l.Type {
	case "thread.started":
		base.Kind = transcript.KindInit
		base.SessionID = string(l.ThreadID)
	case "turn.started":
		base.Kind = transcript.KindSystem
		base.Subtype = "turn_started"
	case "turn.completed":
		base.Kind = transcript.KindResult
		base.Subtype = "success"
		base.Usage = l.Usage.usage()
	case "turn.failed":
		base.Kind = transcript.KindResult
		base.Subtype = "error"
		base.IsError = true
		base.Text = apiErrorText(string(l.Error.Message))
	case "error":
		// A stream error or a retry notice: shown, and remembered as what
		// last went wrong until the model answers again.
		base.Kind = transcript.KindText
		base.IsError = true
		base.Text = apiErrorText(string(l.Message))
	case "item.started", "item.updated", "item.completed":
		if ev, ok := codexItemEvent(base, string(l.Type), l.Item); ok {
			return []transcript.Event{ev}, nil
		}
	}
	return []transcript.Event{base}, nil
}

// apiErrorText reads the model API's error body, which Codex passes on as
// its message ({"error":{"message":…,"type":…}}), as "message (type)";
// any other message is kept as it is.
func apiErrorText(msg string) string {
	var body struct {
		Error *struct {
			Message lenientString `json:"message"`
			Type    lenientString `json:"type"`
		} `json:"error"`
	}
	trimmed := strings.TrimSpace(msg)
	if !strings.HasPrefix(trimmed, "{") || json.Unmarshal([]byte(trimmed), &body) != nil || body.Error == nil || body.Error.Message == "" {
		return msg
	}
	if body.Error.Type == "" {
		return string(body.Error.Message)
	}
	return string(body.Error.Message) + " (" + string(body.Error.Type) + ")"
}

// codexItemEvent maps a thread item: a message or reasoning when it
// completes; a tool call when it starts and its result when it completes.
// item.updated (progress of a running item) maps to nothing new.
func codexItemEvent(base transcript.Event, phase string, it codexItem) (transcript.Event, bool) {
	ev := base
	ev.ToolUseID = string(it.ID)
	started, completed := phase == "item.started", phase == "item.completed"
	failed := it.Status == "failed" || it.Status == "declined"
	switch it.Type {
	case "agent_message":
		if !completed {
			return ev, false
		}
		ev.Kind, ev.Text, ev.ToolUseID = transcript.KindText, string(it.Text), ""
	case "reasoning":
		if !completed {
			return ev, false
		}
		ev.Kind, ev.Text, ev.ToolUseID = transcript.KindThinking, string(it.Text), ""
	case "error":
		// Codex reports warnings (an unknown model, a config problem) as
		// error items; the turn goes on.
		if !completed {
			return ev, false
		}
		ev.Kind, ev.Text, ev.IsError, ev.ToolUseID = transcript.KindText, string(it.Message), true, ""
	case "command_execution":
		switch {
		case started:
			ev.Kind, ev.Tool = transcript.KindToolUse, "exec_command"
			ev.ToolInput = mustJSON(map[string]string{"cmd": unwrapShell(string(it.Command))})
		case completed:
			ev.Kind = transcript.KindToolResult
			ev.ToolResult = string(it.AggregatedOutput)
			ev.IsError = failed || it.ExitCode != nil && *it.ExitCode != 0
		default:
			return ev, false
		}
	case "file_change":
		switch {
		case started:
			ev.Kind, ev.Tool = transcript.KindToolUse, "apply_patch"
			ev.ToolInput = mustJSON(map[string]string{"changes": it.changeList()})
		case completed:
			ev.Kind = transcript.KindToolResult
			ev.ToolResult = it.changeList()
			ev.IsError = failed
		default:
			return ev, false
		}
	case "mcp_tool_call":
		switch {
		case started:
			ev.Kind = transcript.KindToolUse
			ev.Tool = strings.TrimPrefix(string(it.Server)+"."+string(it.Tool), ".")
			ev.ToolInput = rawObject(it.Arguments)
		case completed:
			ev.Kind = transcript.KindToolResult
			ev.ToolResult = string(it.Error.Message)
			if ev.ToolResult == "" {
				ev.ToolResult = compact(it.Result)
			}
			ev.IsError = failed || it.Error.Message != ""
		default:
			return ev, false
		}
	case "web_search":
		if !started {
			return ev, false
		}
		ev.Kind, ev.Tool = transcript.KindToolUse, "web_search"
		ev.ToolInput = mustJSON(map[string]string{"query": string(it.Query)})
	default:
		return ev, false
	}
	return ev, true
}

// codexLine is the part of a line that is shown. Every string is a
// lenientString, so a field of unexpected type reads as empty instead of
// losing the line.
type codexLine struct {
	Type     lenientString `json:"type"`
	ThreadID lenientString `json:"thread_id"`
	Message  lenientString `json:"message"`
	Error    codexError    `json:"error"`
	Item     codexItem     `json:"item"`
	Usage    *codexUsage   `json:"usage"`
}

// codexUsage is turn.completed's: the thread's token counts so far (a
// resumed thread's include the earlier turns), cached input counted in
// input_tokens too.
type codexUsage struct {
	Input      lenientInt `json:"input_tokens"`
	Cached     lenientInt `json:"cached_input_tokens"`
	CacheWrite lenientInt `json:"cache_write_input_tokens"`
	Output     lenientInt `json:"output_tokens"`
}

func (u *codexUsage) usage() *transcript.Usage {
	if u == nil {
		return nil
	}
	in := max(int(u.Input), 0)
	cached := min(max(int(u.Cached), 0), in)
	return &transcript.Usage{Input: in - cached, CacheRead: cached, CacheWrite: max(int(u.CacheWrite), 0), Output: max(int(u.Output), 0)}
}

// lenientInt is a JSON number; any other JSON value reads as 0.
type lenientInt int

func (n *lenientInt) UnmarshalJSON(b []byte) error {
	var v int
	if json.Unmarshal(b, &v) == nil {
		*n = lenientInt(v)
	}
	return nil
}

type codexError struct {
	Message lenientString `json:"message"`
}

func (e *codexError) UnmarshalJSON(b []byte) error {
	var v struct {
		Message lenientString `json:"message"`
	}
	if json.Unmarshal(b, &v) == nil {
		e.Message = v.Message
	}
	return nil
}

type codexItem struct {
	ID               lenientString   `json:"id"`
	Type             lenientString   `json:"type"`
	Status           lenientString   `json:"status"`
	Text             lenientString   `json:"text"`
	Message          lenientString   `json:"message"`
	Command          lenientString   `json:"command"`
	AggregatedOutput lenientString   `json:"aggregated_output"`
	ExitCode         *int            `json:"-"`
	Changes          []codexChange   `json:"-"`
	Server           lenientString   `json:"server"`
	Tool             lenientString   `json:"tool"`
	Arguments        json.RawMessage `json:"arguments"`
	Result           json.RawMessage `json:"result"`
	Error            codexError      `json:"error"`
	Query            lenientString   `json:"query"`
}

type codexChange struct {
	Path lenientString `json:"path"`
	Kind lenientString `json:"kind"`
}

// UnmarshalJSON never fails on an object: fields of unexpected type are
// left empty.
func (it *codexItem) UnmarshalJSON(b []byte) error {
	type plain codexItem
	var p plain
	var extra struct {
		ExitCode json.RawMessage `json:"exit_code"`
		Changes  json.RawMessage `json:"changes"`
	}
	if json.Unmarshal(b, &p) != nil {
		return nil
	}
	_ = json.Unmarshal(b, &extra)
	*it = codexItem(p)
	var code int
	if json.Unmarshal(extra.ExitCode, &code) == nil && len(extra.ExitCode) > 0 && string(extra.ExitCode) != "null" {
		it.ExitCode = &code
	}
	var changes []codexChange
	if json.Unmarshal(extra.Changes, &changes) == nil {
		it.Changes = changes
	}
	return nil
}

// changeList says what a file change does, one "kind path" per file.
func (it codexItem) changeList() string {
	parts := make([]string, 0, len(it.Changes))
	for _, c := range it.Changes {
		parts = append(parts, strings.TrimSpace(string(c.Kind)+" "+string(c.Path)))
	}
	return strings.Join(parts, ", ")
}

// lenientString is a JSON string; any other JSON value reads as "".
type lenientString string

func (s *lenientString) UnmarshalJSON(b []byte) error {
	var v string
	if json.Unmarshal(b, &v) == nil {
		*s = lenientString(v)
	}
	return nil
}

// unwrapShell shows the command Codex ran as the model wrote it: Codex runs
// cmd as `/bin/bash -lc 'cmd'` (or in double quotes when cmd has single
// quotes) and reports that. The wrapper is removed only when the quoting
// can be undone exactly.
func unwrapShell(command string) string {
	for _, shell := range []string{"/bin/bash -lc ", "/bin/sh -c ", "bash -lc ", "sh -c "} {
		rest, ok := strings.CutPrefix(command, shell)
		if !ok || len(rest) < 2 || rest[0] != rest[len(rest)-1] {
			continue
		}
		inner := rest[1 : len(rest)-1]
		switch rest[0] {
		case '\'':
			if !strings.Contains(inner, "'") {
				return inner
			}
		case '"':
			if s, ok := unquoteDouble(inner); ok {
				return s
			}
		}
	}
	return command
}

// unquoteDouble undoes bash double quoting of s (the text between the
// quotes): a backslash escapes $ ` " \ and is kept before anything else. It
// fails on what bash would expand or what ends the quotes early.
func unquoteDouble(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '$', '`', '"':
			return "", false
		case '\\':
			if i+1 == len(s) {
				return "", false // it would escape the closing quote
			}
			if strings.IndexByte("$`\"\\", s[i+1]) >= 0 {
				i++
				c = s[i]
			}
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v) // maps of strings: cannot fail
	return b
}

// rawObject keeps an MCP call's arguments if they are a JSON object.
func rawObject(raw json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return json.RawMessage("{}")
	}
	return bytes.Clone(raw)
}

func compact(raw json.RawMessage) string {
	var buf bytes.Buffer
	if len(raw) == 0 || json.Compact(&buf, raw) != nil || buf.String() == "null" {
		return ""
	}
	return buf.String()
}
