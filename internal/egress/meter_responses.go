package egress

import (
	"bytes"
	"encoding/json"

	"github.com/airlock-dev/airlock/internal/budget"
)

// The OpenAI Responses API (POST /v1/responses, Codex CLI's only wire API)
// streams server-sent events whose data names its type:
//
//	response.created     {"response":{"model":…,"usage":null,…}}
//	response.output_*    deltas and items: no usage
//	response.completed   {"response":{"model":…,"output":[…],"usage":{…}}}
//
// A response that ends early (response.incomplete: max tokens reached;
// response.failed) carries the usage billed so far the same way. A
// non-streaming response is the response object itself.

// responsesEvent is the part of a Responses API event, or of a whole
// response object, that carries the model and usage.
type responsesEvent struct {
	Type     string             `json:"type"`
	Model    string             `json:"model"` // a non-streaming response
	Usage    *responsesUsageObj `json:"usage"` // a non-streaming response
	Response *struct {
		Model string             `json:"model"`
		Usage *responsesUsageObj `json:"usage"`
	} `json:"response"`
}

type responsesUsageObj struct {
	// InputTokens includes the cached tokens.
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	// OutputTokens includes the reasoning tokens (billed as output).
	OutputTokens int `json:"output_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// usage is the response's usage as the budget prices it: the input not
// read from the cache as input, the cached part as cache reads, the output
// (reasoning included) as output. Tokens the total counts that no other
// field explains are output too, so that a count the API adds later is
// charged, not lost.
func (u *responsesUsageObj) usage() budget.Usage {
	in := max(u.InputTokens, 0)
	cached := min(max(u.InputTokensDetails.CachedTokens, 0), in)
	out := max(u.OutputTokens, 0)
	if rest := max(u.TotalTokens, 0) - in; rest > out {
		out = rest
	}
	return budget.Usage{Input: in - cached, CacheRead: cached, Output: out}
}

// responsesUsageEvent reports whether an SSE event of this name can carry
// the model or usage, so a scanner need keep only those events' data: the
// deltas, most of a stream's bytes, never do.
func responsesUsageEvent(name []byte) bool {
	switch string(name) {
	case "response.created", "response.in_progress", "response.completed", "response.incomplete", "response.failed":
		return true
	}
	return false
}

// responsesUsage reads one Responses API event (an SSE event's data) or a
// whole non-streaming response, and reports the model and the response's
// usage to observe. The usage comes once per response, whole, at its end;
// response.created reports the model alone (zero usage), so the meter
// knows it early. Data that carries neither reports nothing.
//
// response.completed repeats the whole output, so it can be longer than a
// scanner keeps; data that is not valid JSON is searched for the usage
// object, which the API writes after the output: a scanner may feed just
// the head and tail of a long event.
func responsesUsage(data []byte, observe func(model string, u budget.Usage)) {
	data = bytes.TrimSpace(data)
	var ev responsesEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		if u, ok := usageInTail(data); ok {
			observe(modelInHead(data), u.usage())
		}
		return
	}
	model, usage := ev.Model, ev.Usage
	if ev.Response != nil {
		model, usage = ev.Response.Model, ev.Response.Usage
	}
	switch {
	case usage != nil:
		observe(model, usage.usage())
	case model != "":
		observe(model, budget.Usage{})
	}
}

// usageInTail finds the last "usage" object in data that is not valid JSON
// as a whole (cut short in the middle). A key with unescaped quotes cannot
// occur inside a JSON string, so the match is a real key; the response's
// own usage is the last one.
func usageInTail(data []byte) (*responsesUsageObj, bool) {
	i := bytes.LastIndex(data, []byte(`"usage":`))
	if i < 0 {
		return nil, false
	}
	var u responsesUsageObj
	dec := json.NewDecoder(bytes.NewReader(data[i+len(`"usage":`):]))
	if dec.Decode(&u) != nil || u.InputTokens+u.OutputTokens+u.TotalTokens == 0 {
		return nil, false
	}
	return &u, true
}

// modelInHead finds the response's model near the start of an event cut
// short: the response object names it before its output.
func modelInHead(data []byte) string {
	i := bytes.Index(data, []byte(`"model":`))
	if i < 0 {
		return ""
	}
	var m string
	if json.NewDecoder(bytes.NewReader(data[i+len(`"model":`):])).Decode(&m) != nil {
		return ""
	}
	return m
}

// responsesUsageFormat meters the Responses API ("openai-responses").
var responsesUsageFormat = usageFormat{
	event: responsesUsageEvent,
	data:  func(rm *responseMeter, data []byte) { responsesUsage(data, rm.observe) },
}
