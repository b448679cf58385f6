package transcript

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Outcomes of a run, as a Summary reports them.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeUnknown   = "unknown" // the transcript has no result line (yet)
)

// Summary is what a transcript says about its run as a whole.
type Summary struct {
	Outcome  string // OutcomeSucceeded, OutcomeFailed or OutcomeUnknown
	Subtype  string // the result line's subtype, e.g. "success", "error_max_turns"
	IsError  bool
	Final    bool // a result line was seen
	Turns    int
	Duration time.Duration
	CostUSD  float64

	InputTokens, OutputTokens, CacheRead, CacheCreation int

	SessionID, Model string
	Result           string // the agent's final text
	// ErrorText says why the run failed, or, for a transcript without a
	// result line, what last went wrong (an API error or retry).
	ErrorText string
	Skipped   int // lines that were not JSON

	// lastText is the agent's text since its last tool call, for an agent
	// whose result line does not repeat its final answer (the Gemini CLI);
	// lastDelta says it ended with a piece of streamed text.
	lastText  string
	lastDelta bool
	// calls counts the model calls that reported usage, the turns of an
	// agent whose end does not count them (opencode).
	calls int
}

// maxLastText bounds the final text a Summary keeps from text events.
const maxLastText = 1 << 20

// Summarize reads a whole transcript. It fails only on a read error, and
// even then returns what it had read.
func Summarize(r io.Reader) (Summary, error) { return SummarizeWith(r, nil) }

// SummarizeWith is Summarize for a transcript parse reads (an agent's
// ParseLine); nil is Claude Code's.
func SummarizeWith(r io.Reader, parse func([]byte) ([]Event, error)) (Summary, error) {
	s := Summary{Outcome: OutcomeUnknown}
	sc := NewScanner(r)
	sc.Parse = parse
	for sc.Scan() {
		s.Add(sc.Event())
	}
	s.Skipped = sc.Skipped()
	return s, sc.Err()
}

// Add folds one event into the summary, for callers that render and
// summarize in one pass. A zero Summary is ready to use.
func (s *Summary) Add(ev Event) {
	if s.Outcome == "" {
		s.Outcome = OutcomeUnknown
	}
	if s.SessionID == "" {
		s.SessionID = ev.SessionID
	}
	switch ev.Kind {
	case KindInit:
		s.Model = ev.Model
	case KindText, KindThinking, KindToolUse:
		s.trackText(ev)
		// Before the result line, ErrorText tracks the model API: an error
		// report sets it and any real answer from the model clears it.
		if !s.Final {
			s.ErrorText = ""
			if ev.IsError {
				s.ErrorText = ev.Text
			}
		}
	case KindSystem:
		switch {
		case ev.Subtype == "api_retry" && !s.Final:
			s.ErrorText = retryText(ev.Raw)
		case ev.Subtype == "error" && ev.IsError && !s.Final:
			s.ErrorText = ev.Text
		}
	case KindToolResult:
		s.lastText, s.lastDelta = "", false
	case KindResult:
		s.addResult(ev)
	}
	if u := ev.Usage; u != nil && ev.Kind != KindResult {
		s.calls++
		s.InputTokens += u.Input
		s.OutputTokens += u.Output
		s.CacheRead += u.CacheRead
		s.CacheCreation += u.CacheWrite
	}
	if s.Model == "" && ev.Model != "" && ev.Model != "<synthetic>" {
		s.Model = ev.Model
	}
}

func (s *Summary) addResult(ev Event) {
	var apiError string
	if !s.Final {
		apiError = s.ErrorText
	}
	s.Final = true
	s.Subtype = ev.Subtype
	s.IsError = ev.IsError || ev.Subtype != "" && ev.Subtype != "success"
	if ev.Turns > 0 {
		s.Turns = ev.Turns
	} else if s.Turns == 0 {
		s.Turns = s.calls
	}
	if ev.Duration > 0 {
		s.Duration = ev.Duration
	}
	if ev.CostUSD > 0 {
		s.CostUSD = ev.CostUSD
	}
	if u := ev.Usage; u != nil {
		s.InputTokens, s.OutputTokens, s.CacheRead, s.CacheCreation = u.Input, u.Output, u.CacheRead, u.CacheWrite
	}
	s.Result = ev.Text
	lastText := s.lastText
	s.lastText, s.lastDelta = "", false
	if !s.IsError {
		if s.Result == "" {
			s.Result = lastText
		}
		s.Outcome = OutcomeSucceeded
		s.ErrorText = ""
		return
	}
	s.Outcome = OutcomeFailed
	switch {
	case len(ev.Errors) > 0:
		s.ErrorText = strings.Join(ev.Errors, "; ")
	case ev.Text != "":
		s.ErrorText = ev.Text
	case apiError != "":
		s.ErrorText = apiError
	default:
		s.ErrorText = fmt.Sprintf("the agent stopped with %s", orDefault(ev.Subtype, "an error"))
	}
}

// retryText describes a system/api_retry line: Claude Code is retrying a
// failed model API call, which is why a run can sit silent for minutes.
func retryText(raw json.RawMessage) string {
	var r struct {
		Attempt     int    `json:"attempt"`
		MaxRetries  int    `json:"max_retries"`
		ErrorStatus *int   `json:"error_status"`
		Error       string `json:"error"`
	}
	json.Unmarshal(raw, &r)
	why := orDefault(r.Error, "unknown error")
	if r.ErrorStatus != nil {
		why = fmt.Sprintf("HTTP %d, %s", *r.ErrorStatus, why)
	}
	return fmt.Sprintf("the model API failed (%s); retry %d of %d", why, r.Attempt, r.MaxRetries)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// trackText keeps the text since the last tool call: pieces of streamed
// text (Subtype "delta") join as they came, whole texts as paragraphs.
func (s *Summary) trackText(ev Event) {
	if ev.Kind != KindText || ev.IsError {
		if ev.Kind == KindToolUse {
			s.lastText, s.lastDelta = "", false
		}
		return
	}
	delta := ev.Subtype == "delta"
	text := ev.Text
	if s.lastText != "" && !(delta && s.lastDelta) {
		text = "\n\n" + text
	}
	if len(s.lastText)+len(text) <= maxLastText {
		s.lastText += text
	}
	s.lastDelta = delta
}
