package transcript

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		file string
		want Summary
	}{
		{"success.jsonl", Summary{
			Outcome: OutcomeSucceeded, Subtype: "success", Final: true, Turns: 4,
			Duration: 639 * time.Millisecond, CostUSD: 0.00444,
			InputTokens: 400, OutputTokens: 120, CacheRead: 200, CacheCreation: 80,
			SessionID: "b91f27c3-27ef-4585-b294-e5a15ccc8a06", Model: "claude-opus-5-5",
			Result: "Done: hello.py prints hello.",
		}},
		{"api_error.jsonl", Summary{
			// Claude Code says "success" with is_error true when the API fails.
			Outcome: OutcomeFailed, Subtype: "success", IsError: true, Final: true, Turns: 1,
			Duration:  139 * time.Millisecond,
			SessionID: "3c62127b-6edc-4871-933d-1a1ba21c2a9d", Model: "claude-opus-5-5",
			Result:    "API Error: 400 scripted failure: model not allowed",
			ErrorText: "API Error: 400 scripted failure: model not allowed",
		}},
		{"max_turns.jsonl", Summary{
			Outcome: OutcomeFailed, Subtype: "error_max_turns", IsError: true, Final: true, Turns: 2,
			Duration: 137 * time.Millisecond, CostUSD: 0.00111,
			InputTokens: 100, OutputTokens: 30, CacheRead: 50, CacheCreation: 20,
			SessionID: "a7bb6929-9832-4d3a-a0c1-8f575fef5175", Model: "claude-opus-5-5",
			ErrorText: "Reached maximum number of turns (1)",
		}},
		{"retrying.jsonl", Summary{
			Outcome:   OutcomeUnknown,
			SessionID: "a0811e0d-05a3-4e51-b850-dedf49e5a593", Model: "claude-opus-5-5",
			ErrorText: "the model API failed (unknown); retry 7 of 10",
		}},
		{"truncated.jsonl", Summary{
			Outcome:   OutcomeUnknown,
			SessionID: "9b2d6f30-1c1e-4f7a-8a9e-0e5c2d7b4a11", Model: "claude-sonnet-4-5",
			Skipped: 1, // the half-written last line
		}},
		{"mixed.jsonl", Summary{
			Outcome: OutcomeSucceeded, Subtype: "success", Final: true, Turns: 7,
			Duration: 83500 * time.Millisecond, CostUSD: 0.1834,
			InputTokens: 15230, OutputTokens: 2210, CacheRead: 52000, CacheCreation: 4100,
			SessionID: "5e1c1b7a-6a43-4d0c-9d7b-1f2a3b4c5d6e", Model: "claude-sonnet-4-5",
			Result:  "Fixed the off-by-one in parse.go.\nAll tests pass.",
			Skipped: 1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := Summarize(f)
			if err != nil {
				t.Fatal(err)
			}
			got.lastText, got.calls = "", 0 // the summary's own bookkeeping
			if got != tt.want {
				t.Errorf("Summarize =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestSummaryErrorText(t *testing.T) {
	const (
		retry    = `{"type":"system","subtype":"api_retry","attempt":2,"max_retries":10,"error_status":529,"error":"overloaded_error"}`
		apiError = `{"type":"assistant","message":{"model":"<synthetic>","content":[{"type":"text","text":"API Error: 500 Internal Server Error"}]},"error":"unknown","is_api_error_message":true}`
		answer   = `{"type":"assistant","message":{"model":"m","content":[{"type":"text","text":"Working on it."}]}}`
	)
	tests := []struct {
		name        string
		lines       []string
		wantOutcome string
		wantError   string
	}{
		{"retrying", []string{retry}, OutcomeUnknown, "the model API failed (HTTP 529, overloaded_error); retry 2 of 10"},
		{"API error, no result yet", []string{retry, apiError}, OutcomeUnknown, "API Error: 500 Internal Server Error"},
		{"recovered after a retry", []string{retry, answer}, OutcomeUnknown, ""},
		{"failed result without text keeps the API error", []string{apiError, `{"type":"result","subtype":"success","is_error":true}`}, OutcomeFailed, "API Error: 500 Internal Server Error"},
		{"error during execution", []string{`{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["tool crashed","gave up"]}`}, OutcomeFailed, "tool crashed; gave up"},
		{"error subtype with nothing else", []string{`{"type":"result","subtype":"error_during_execution"}`}, OutcomeFailed, "the agent stopped with error_during_execution"},
		{"success clears earlier API errors", []string{apiError, answer, `{"type":"result","subtype":"success","is_error":false,"result":"done"}`}, OutcomeSucceeded, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Summarize(strings.NewReader(strings.Join(tt.lines, "\n")))
			if err != nil {
				t.Fatal(err)
			}
			if s.Outcome != tt.wantOutcome || s.ErrorText != tt.wantError {
				t.Errorf("Outcome, ErrorText = %q, %q; want %q, %q", s.Outcome, s.ErrorText, tt.wantOutcome, tt.wantError)
			}
		})
	}
}
