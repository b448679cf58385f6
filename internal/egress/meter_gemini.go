package egress

import (
	"bytes"
	"encoding/json"

	"github.com/airlock-dev/airlock/internal/budget"
)

// geminiResponse is the part of a Gemini API response that carries usage:
// one streamed chunk (an SSE event's data with ?alt=sse), a whole
// generateContent response, or one element of the JSON array that
// streamGenerateContent returns without ?alt=sse.
type geminiResponse struct {
	ModelVersion  string               `json:"modelVersion"`
	UsageMetadata *geminiUsageMetadata `json:"usageMetadata"`
}

type geminiUsageMetadata struct {
	// PromptTokenCount includes the cached tokens and the tool-use prompt
	// does not.
	PromptTokenCount        int `json:"promptTokenCount"`
	CachedContentTokenCount int `json:"cachedContentTokenCount"`
	CandidatesTokenCount    int `json:"candidatesTokenCount"`
	ThoughtsTokenCount      int `json:"thoughtsTokenCount"`
	ToolUsePromptTokenCount int `json:"toolUsePromptTokenCount"`
	TotalTokenCount         int `json:"totalTokenCount"`
}

// usage is the response's usage as the budget prices it: the prompt not
// read from the cache (tool-use prompt included) as input, the cached part
// as cache reads, and candidates and thoughts (both billed as output) as
// output. Tokens the total counts that no other field explains are output
// too, so that a count the API adds later is charged, not lost.
func (m *geminiUsageMetadata) usage() budget.Usage {
	cached := min(max(m.CachedContentTokenCount, 0), max(m.PromptTokenCount, 0))
	input := max(m.PromptTokenCount, 0) - cached + max(m.ToolUsePromptTokenCount, 0)
	output := max(m.CandidatesTokenCount, 0) + max(m.ThoughtsTokenCount, 0)
	if rest := max(m.TotalTokenCount, 0) - max(m.PromptTokenCount, 0) - max(m.ToolUsePromptTokenCount, 0); rest > output {
		output = rest
	}
	return budget.Usage{Input: input, CacheRead: cached, Output: output}
}

// geminiUsage reads the usage in one Gemini API response event (the data
// of an SSE event, or a whole JSON body, object or array) and reports each
// count it finds to observe, with the model that answered. Within one
// response the counts are cumulative (every chunk repeats the prompt's
// count, and the candidates' count grows to the last chunk's), which is
// what responseMeter.observe expects: it charges only what grew. Data that
// is not such a response reports nothing.
func geminiUsage(data []byte, observe func(model string, u budget.Usage)) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return
	}
	var chunks []geminiResponse
	if data[0] == '[' {
		if json.Unmarshal(data, &chunks) != nil {
			return
		}
	} else {
		var one geminiResponse
		if json.Unmarshal(data, &one) != nil {
			return
		}
		chunks = []geminiResponse{one}
	}
	for _, c := range chunks {
		if c.UsageMetadata != nil {
			observe(c.ModelVersion, c.UsageMetadata.usage())
		}
	}
}

// geminiFormat meters the Gemini API ("gemini"): its events are unnamed,
// each one chunk with the response's usage so far.
var geminiFormat = usageFormat{
	event: func([]byte) bool { return true },
	data:  func(rm *responseMeter, data []byte) { geminiUsage(data, rm.observe) },
}
