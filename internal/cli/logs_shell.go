package cli

import (
	"encoding/json"
	"strings"
)

// typedPrompt recognises, in an interactive run's session log, a prompt the
// person typed: a user line whose content is a plain string (tool results
// and Claude Code's own additions are lists of blocks, or marked meta).
// Headless stream-json has no such lines.
func typedPrompt(line []byte) (string, bool) {
	var l struct {
		Type    string `json:"type"`
		IsMeta  bool   `json:"isMeta"`
		Message struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"message"`
	}
	if json.Unmarshal(line, &l) != nil || l.Type != "user" || l.IsMeta || l.Message.Role != "user" {
		return "", false
	}
	var text string
	if json.Unmarshal(l.Message.Content, &text) != nil {
		return "", false
	}
	// Slash commands and Claude Code's own notes come wrapped in tags.
	text = strings.TrimSpace(text)
	if text == "" || strings.HasPrefix(text, "<") {
		return "", false
	}
	return text, true
}
