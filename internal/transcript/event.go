// Package transcript reads agents' transcripts: it holds the normalized
// events every agent's transcript is turned into (Event), the parser of
// Claude Code's own stream-json (`claude -p --output-format stream-json
// --verbose`: one JSON object per line; the other agents' parsers live with
// the agents), and turns events into a run summary and text for people.
// Agents add new line types and fields often; anything unknown is carried
// along, never an error.
package transcript

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Kind says what an Event is.
type Kind string

const (
	KindInit       Kind = "init"        // the session started: SessionID, Model, Cwd
	KindSystem     Kind = "system"      // any other system line, e.g. an API retry; see Subtype
	KindText       Kind = "text"        // the agent's text
	KindThinking   Kind = "thinking"    // the agent's visible reasoning
	KindToolUse    Kind = "tool_use"    // the agent calls a tool
	KindToolResult Kind = "tool_result" // a tool's answer
	KindResult     Kind = "result"      // the run ended; the last line of a complete transcript
	KindUnknown    Kind = "unknown"     // anything else, kept in Raw
)

// Event is one item of a transcript. A line holding a message becomes one
// event per content block (a text and two tool calls are three events); any
// other line becomes one event.
type Event struct {
	Kind      Kind
	Subtype   string // of system and result lines
	SessionID string
	Model     string // KindInit, and the model that wrote a message
	Cwd       string // KindInit

	Text string // KindText and KindThinking; KindResult: the final text

	Tool      string          // KindToolUse
	ToolInput json.RawMessage // KindToolUse
	ToolUseID string          // KindToolUse and KindToolResult

	ToolResult string // KindToolResult, text parts joined
	// IsError marks a failed tool result, an API error the agent reported
	// as text, or a result line for a failed run.
	IsError bool

	// ParentToolUseID is set on events of a sub-agent, naming the tool call
	// (usually Task) that started it.
	ParentToolUseID string

	// Usage is the token usage the event reports: on a result event the
	// run's totals, on any other event one model call's (summed up).
	Usage *Usage
	// The rest are a result event's: the cost the agent itself reports,
	// its count of turns, how long it says the run took, and its errors.
	CostUSD  float64
	Turns    int
	Duration time.Duration
	Errors   []string

	Raw json.RawMessage // the whole line
}

// ErrNotJSON is returned (wrapped) by ParseLine for a line that is not a JSON
// object. Such lines happen (warnings printed to stdout) and are skipped.
var ErrNotJSON = errors.New("not a JSON object")

// ParseLine parses one transcript line into one or more events (never zero).
// It fails only when the line is not a JSON object; unknown types and fields
// of unexpected shape are tolerated.
//
// The line is decoded once, into the fields that are shown: a transcript
// can be hundreds of megabytes, most of it tool output. A field of the
// wrong type reads as missing, as it did when every field was looked up on
// its own.
func ParseLine(line []byte) ([]Event, error) {
	evs, err := parseLine(line)
	for i := range evs {
		if evs[i].Kind == KindResult {
			resultFields(&evs[i])
		}
	}
	return evs, err
}

// Usage is a count of tokens.
type Usage struct {
	Input      int // not read from the cache
	Output     int
	CacheRead  int
	CacheWrite int
}

// Add adds u to the count.
func (t *Usage) Add(u Usage) {
	t.Input += u.Input
	t.Output += u.Output
	t.CacheRead += u.CacheRead
	t.CacheWrite += u.CacheWrite
}

// resultFields reads the figures of a result line, which are only shown: a
// field of unexpected type only loses that field.
func resultFields(ev *Event) {
	var line struct {
		NumTurns   int      `json:"num_turns"`
		DurationMS int64    `json:"duration_ms"`
		CostUSD    float64  `json:"total_cost_usd"`
		Errors     []string `json:"errors"`
		Usage      *struct {
			Input         int `json:"input_tokens"`
			Output        int `json:"output_tokens"`
			CacheRead     int `json:"cache_read_input_tokens"`
			CacheCreation int `json:"cache_creation_input_tokens"`
		} `json:"usage"`
	}
	json.Unmarshal(ev.Raw, &line)
	ev.Turns = line.NumTurns
	ev.Duration = time.Duration(line.DurationMS) * time.Millisecond
	ev.CostUSD = line.CostUSD
	ev.Errors = line.Errors
	if u := line.Usage; u != nil {
		ev.Usage = &Usage{Input: u.Input, Output: u.Output, CacheRead: u.CacheRead, CacheWrite: u.CacheCreation}
	}
}

func parseLine(line []byte) ([]Event, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, ErrNotJSON
	}
	var l wireLine
	if err := json.Unmarshal(line, &l); err != nil {
		if isTypeError(err) {
			// A field of unexpected type (rare: a hostile or a future
			// line): read the line field by field, as loosely as ever.
			return parseLoose(line)
		}
		return nil, ErrNotJSON
	}
	base := Event{
		Kind:            KindUnknown,
		Subtype:         l.Subtype,
		SessionID:       l.SessionID,
		ParentToolUseID: l.ParentToolUseID,
		Raw:             json.RawMessage(bytes.Clone(line)),
	}
	switch l.Type {
	case "system":
		base.Kind = KindSystem
		if base.Subtype == "init" {
			base.Kind = KindInit
			base.Model = l.Model
			base.Cwd = l.Cwd
		}
	case "result":
		base.Kind = KindResult
		base.Text = l.Result
		base.IsError = l.IsError
	case "assistant", "user":
		if evs := messageEvents(base, &l); len(evs) > 0 {
			return evs, nil
		}
	}
	return []Event{base}, nil
}

// wireLine is the part of a transcript line that is shown, decoded in one
// pass. Keys match as encoding/json matches them, ignoring case: a line
// with "Type" for "type" means nothing the agent could not write plainly.
type wireLine struct {
	Type              string       `json:"type"`
	Subtype           string       `json:"subtype"`
	SessionID         string       `json:"session_id"`
	ParentToolUseID   string       `json:"parent_tool_use_id"`
	Model             string       `json:"model"`
	Cwd               string       `json:"cwd"`
	Result            string       `json:"result"`
	IsError           bool         `json:"is_error"`
	IsAPIErrorMessage bool         `json:"is_api_error_message"`
	Error             string       `json:"error"`
	Message           *wireMessage `json:"message"`
}

type wireMessage struct {
	Model   string      `json:"model"`
	Content []wireBlock `json:"content"`
}

type wireBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Thinking  string          `json:"thinking"`
	Name      string          `json:"name"`
	ID        string          `json:"id"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	// Content is a tool result's: a string, or a list of blocks. Decoded
	// as any, a string (most of a transcript's bytes) is read once.
	Content any  `json:"content"`
	IsError bool `json:"is_error"`
}

func isTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

// messageEvents splits a message's content blocks into events.
func messageEvents(base Event, line *wireLine) []Event {
	msg := line.Message
	if msg == nil {
		return nil
	}
	base.Model = msg.Model
	if msg.Content == nil {
		return nil
	}
	// Claude Code reports a failed model API call as an assistant message
	// of its own making; those must read as errors, not as the agent's words.
	apiError := line.IsAPIErrorMessage || base.Model == "<synthetic>" && line.Error != ""
	var evs []Event
	for _, b := range msg.Content {
		ev := base
		switch b.Type {
		case "text":
			ev.Kind = KindText
			ev.Text = b.Text
			ev.IsError = apiError
		case "thinking":
			ev.Kind = KindThinking
			ev.Text = b.Thinking
		case "tool_use":
			ev.Kind = KindToolUse
			ev.Tool = b.Name
			ev.ToolUseID = b.ID
			ev.ToolInput = b.Input
		case "tool_result":
			ev.Kind = KindToolResult
			ev.ToolUseID = b.ToolUseID
			ev.ToolResult = contentText(b.Content)
			ev.IsError = b.IsError
		default:
			continue
		}
		evs = append(evs, ev)
	}
	return evs
}

// contentText flattens a tool result's content: a string, or a list of
// blocks of which the text ones are kept.
func contentText(content any) string {
	switch c := content.(type) {
	case string:
		return c
	case []any:
		var parts []string
		for _, b := range c {
			blk, ok := b.(map[string]any)
			if !ok && b != nil {
				return "" // not a list of blocks
			}
			switch blk["type"] {
			case "text":
				t, _ := blk["text"].(string)
				parts = append(parts, t)
			case "image":
				parts = append(parts, "[image]")
			}
		}
		return strings.Join(parts, "\n")
	}
	return ""
}

// parseLoose is ParseLine for a line with a field of unexpected type: each
// field looked up on its own, so that one of the wrong type reads as
// missing and no other is lost.
func parseLoose(line []byte) ([]Event, error) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(line, &obj) != nil || obj == nil {
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
		if evs := looseMessageEvents(base, obj); len(evs) > 0 {
			return evs, nil
		}
	}
	return []Event{base}, nil
}

func looseMessageEvents(base Event, line map[string]json.RawMessage) []Event {
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
			ev.ToolResult = looseResultText(b["content"])
			ev.IsError = boolean(b["is_error"])
		default:
			continue
		}
		evs = append(evs, ev)
	}
	return evs
}

// looseResultText flattens a tool result's content: a string, or a list of
// blocks of which the text ones are kept.
func looseResultText(content json.RawMessage) string {
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

func strOK(raw json.RawMessage) (string, bool) {
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

// str is the string in raw, or "" when raw is missing or not a string.
func str(raw json.RawMessage) string {
	s, _ := strOK(raw)
	return s
}

func boolean(raw json.RawMessage) bool {
	var b bool
	json.Unmarshal(raw, &b)
	return b
}
