package agent

import (
	"bytes"
	"encoding/json"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// OpencodeVersion is the opencode release (npm opencode-ai) airlock pins;
// scripts/setup.sh installs the same on the host for the tests that drive
// the CLI there.
const OpencodeVersion = "1.18.33"

// opencode's `run --format json` prints one JSON object per line:
//
//	{"type":"step_start","sessionID":…,"part":{…}}     a model call begins
//	{"type":"text","sessionID":…,"part":{"text":…}}     the model's text, once complete
//	{"type":"reasoning",…,"part":{"text":…}}            its reasoning (with --thinking)
//	{"type":"tool_use",…,"part":{"tool":…,"callID":…,"state":{"status":"completed"|"error",
//	  "input":{…},"output":…,"error":…}}}               a tool call and its outcome, in one line
//	{"type":"step_finish",…,"part":{"reason":"tool-calls"|"stop"|…,
//	  "tokens":{"input":…,"output":…,"reasoning":…,"cache":{"read":…,"write":…}},"cost":…}}
//	{"type":"error",…,"error":{"name":…,"data":{"message":…}}}   the run failed (exit 1)
//
// There is no init or result line: the session id is on every line, and the
// run ends with the step that finishes for any reason but "tool-calls" (or
// with an error line). tokens.input excludes the cached prompt tokens.

// opencodeLine is the part of a line that is read.
type opencodeLine struct {
	Type      string          `json:"type"`
	SessionID string          `json:"sessionID"`
	Part      json.RawMessage `json:"part"`
	Error     json.RawMessage `json:"error"`
}

type opencodePart struct {
	Text   string `json:"text"`
	Tool   string `json:"tool"`
	CallID string `json:"callID"`
	State  struct {
		Status string          `json:"status"`
		Input  json.RawMessage `json:"input"`
		Output string          `json:"output"`
		Error  string          `json:"error"`
	} `json:"state"`
	Reason string `json:"reason"`
	Tokens *struct {
		Input     int `json:"input"`
		Output    int `json:"output"`
		Reasoning int `json:"reasoning"`
		Cache     struct {
			Read  int `json:"read"`
			Write int `json:"write"`
		} `json:"cache"`
	} `json:"tokens"`
	Cost float64 `json:"cost"`
}

type opencodeError struct {
	Name string `json:"name"`
	Data struct {
		Message string `json:"message"`
	} `json:"data"`
}

// parseOpencodeLine turns one line of opencode's JSON output into events.
// It fails only for a line that is not a JSON object; a line of unknown
// type, or whose fields have unexpected types, is KindUnknown.
func parseOpencodeLine(line []byte) ([]transcript.Event, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, transcript.ErrNotJSON
	}
	base := transcript.Event{Kind: transcript.KindUnknown, Raw: json.RawMessage(bytes.Clone(line))}
	var l opencodeLine
	if err := json.Unmarshal(line, &l); err != nil {
		if !json.Valid(line) {
			return nil, transcript.ErrNotJSON
		}
		return []transcript.Event{base}, nil
	}
	base.SessionID = l.SessionID
	var p opencodePart
	if len(l.Part) > 0 && json.Unmarshal(l.Part, &p) != nil {
		return []transcript.Event{base}, nil
	}
	switch l.Type {
	case "step_start":
		base.Kind, base.Subtype = transcript.KindSystem, "step_start"
	case "text":
		base.Kind, base.Text = transcript.KindText, p.Text
	case "reasoning":
		base.Kind, base.Text = transcript.KindThinking, p.Text
	case "tool_use":
		use := base
		use.Kind, use.Tool, use.ToolUseID, use.ToolInput = transcript.KindToolUse, p.Tool, p.CallID, p.State.Input
		switch p.State.Status {
		case "completed", "error":
			res := base
			res.Kind, res.ToolUseID = transcript.KindToolResult, p.CallID
			res.ToolResult, res.IsError = p.State.Output, p.State.Status == "error"
			if res.IsError {
				res.ToolResult = p.State.Error
			}
			return []transcript.Event{use, res}, nil
		}
		return []transcript.Event{use}, nil
	case "step_finish":
		base.Kind, base.Subtype = transcript.KindSystem, "step_finish"
		if p.Reason == "tool-calls" || p.Reason == "" {
			return []transcript.Event{base}, nil
		}
		// The model stopped: opencode's loop ends here.
		end := base
		end.Kind, end.Subtype = transcript.KindResult, "success"
		if p.Reason != "stop" {
			end.Subtype, end.IsError = p.Reason, true
		}
		return []transcript.Event{base, end}, nil
	case "error":
		var e opencodeError
		_ = json.Unmarshal(l.Error, &e) // a field of the wrong type only loses it
		base.Kind, base.Subtype, base.IsError = transcript.KindResult, "error", true
		base.Text = e.Data.Message
		if base.Text == "" {
			base.Text = e.Name
		}
	}
	return []transcript.Event{base}, nil
}
