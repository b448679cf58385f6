package transcript

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// DefaultWidth is the line width a Renderer truncates to when Width is 0.
const DefaultWidth = 100

// resultLines is how many lines of a tool result verbosity 2 shows.
const resultLines = 10

// Renderer writes a transcript for people.
//
//	Verbosity 0: only the agent's text.
//	Verbosity 1: also one line per tool call, failed tool calls, API retries
//	             and, from Finish, a closing summary.
//	Verbosity 2: also tool results (truncated), the agent's thinking and the
//	             session's start.
//
// Everything the agent or a tool wrote is stripped of control characters, so
// a transcript cannot drive the terminal that shows it.
type Renderer struct {
	W         io.Writer
	Verbosity int
	Color     bool
	Width     int // columns; 0 means DefaultWidth

	cwd      string            // the session's working directory, to shorten paths
	lastWas  string            // "text" or "tool": a blank line goes between the two
	tools    map[string]string // tool call ID -> tool name
	lastCall string            // ID of the latest tool call shown

	// pieces holds text that arrived in pieces (Subtype "delta", as the
	// Gemini CLI streams it), shown as one text once it is whole: at the
	// next event of another kind, or at Flush or Finish.
	pieces       strings.Builder
	piecesIndent string
}

// maxPieces bounds the text held back from pieces; beyond it, what is held
// is shown and holding starts again.
const maxPieces = 1 << 20

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[36m"
)

// Render writes one event.
func (r *Renderer) Render(ev Event) {
	indent := ""
	if ev.ParentToolUseID != "" {
		indent = "  " // a sub-agent's work, nested under its Task call
	}
	if ev.Kind == KindText && ev.Subtype == "delta" && !ev.IsError {
		if r.piecesIndent != indent || r.pieces.Len()+len(ev.Text) > maxPieces {
			r.Flush()
		}
		r.pieces.WriteString(ev.Text)
		r.piecesIndent = indent
		return
	}
	r.Flush()
	r.render(indent, ev)
}

// Flush shows the text held back from pieces, if any. Finish flushes too;
// a caller that stops without Finish calls Flush.
func (r *Renderer) Flush() {
	if r.pieces.Len() == 0 {
		return
	}
	text, indent := r.pieces.String(), r.piecesIndent
	r.pieces.Reset()
	r.piecesIndent = ""
	r.render(indent, Event{Kind: KindText, Text: text})
}

func (r *Renderer) render(indent string, ev Event) {
	switch ev.Kind {
	case KindInit:
		r.cwd = ev.Cwd
		if r.Verbosity >= 2 {
			r.line("", ansiDim, fmt.Sprintf("● session %s · %s · %s", ev.SessionID, orDefault(ev.Model, "default model"), ev.Cwd))
		}
	case KindText:
		text := strings.TrimRight(clean(ev.Text), "\n")
		if text == "" {
			return
		}
		r.group("text")
		if ev.IsError {
			r.line(indent, ansiRed, "✗ "+text)
			return
		}
		for l := range strings.SplitSeq(text, "\n") {
			r.line(indent, "", l)
		}
	case KindThinking:
		if r.Verbosity < 2 {
			return
		}
		r.group("text")
		r.block(indent+"∴ ", indent+"  ", ansiDim, clean(ev.Text))
	case KindToolUse:
		if r.Verbosity < 1 {
			return
		}
		r.group("tool")
		if r.tools == nil {
			r.tools = map[string]string{}
		}
		r.tools[ev.ToolUseID] = clean(ev.Tool)
		r.lastCall = ev.ToolUseID
		head := "▸ " + orDefault(untrusted.Line(ev.Tool), "tool")
		detail := untrusted.Line(r.toolDetail(ev.Tool, ev.ToolInput))
		if detail != "" {
			detail = "  " + detail
		}
		if r.Color {
			fmt.Fprintf(r.W, "%s%s%s%s%s\n", indent, ansiCyan+ansiBold, head, ansiReset, r.fit(indent+head, detail))
		} else {
			fmt.Fprintf(r.W, "%s%s%s\n", indent, head, r.fit(indent+head, detail))
		}
	case KindToolResult:
		r.renderResult(indent, ev)
	case KindSystem:
		switch {
		case ev.Subtype == "api_retry" && r.Verbosity >= 1:
			r.group("tool")
			r.line(indent, ansiYellow, "⟳ "+retryText(ev.Raw))
		case ev.Subtype == "error" && ev.Text != "" && (ev.IsError || r.Verbosity >= 1):
			// An agent's own error or warning outside a tool (the Gemini
			// CLI's error events: a blocked response, a loop detected).
			r.group("tool")
			if ev.IsError {
				r.line(indent, ansiRed, "✗ "+ev.Text)
			} else {
				r.line(indent, ansiYellow, "! "+ev.Text)
			}
		}
	}
}

func (r *Renderer) renderResult(indent string, ev Event) {
	if r.Verbosity < 2 && !ev.IsError {
		// Not shown: skip cleaning what is most of a transcript's bytes.
		r.lastCall = ""
		return
	}
	text := strings.TrimRight(clean(ev.ToolResult), "\n")
	// Results of parallel calls come after all the calls: name the tool
	// when the result does not follow its own call.
	if name := r.tools[ev.ToolUseID]; name != "" && ev.ToolUseID != r.lastCall && text != "" {
		text = name + ": " + text
	}
	r.lastCall = ""
	switch {
	case r.Verbosity >= 2 && ev.IsError:
		r.block(indent+"  ✗ ", indent+"    ", ansiRed, orDefault(text, "(error)"))
	case r.Verbosity >= 2:
		r.block(indent+"    ", indent+"    ", ansiDim, text)
	case r.Verbosity == 1 && ev.IsError:
		first, _, _ := strings.Cut(strings.TrimSpace(text), "\n")
		r.line(indent+"  ", ansiRed, "✗ "+orDefault(first, "(error)"))
	}
}

// Finish writes the closing summary (verbosity 1 and up).
//
// The summary is the agent's own claim, from its transcript: the run's
// status, cost and turns are the host's, and are shown apart from it.
func (r *Renderer) Finish(s Summary) {
	r.Flush()
	if r.Verbosity < 1 {
		return
	}
	if r.lastWas != "" {
		fmt.Fprintln(r.W)
	}
	var head, color string
	switch s.Outcome {
	case OutcomeSucceeded:
		head, color = "✓ the agent reports success", ansiGreen
	case OutcomeFailed:
		head, color = "✗ the agent reports failure", ansiRed
		if s.Subtype != "" && s.Subtype != "success" {
			head += " (" + s.Subtype + ")"
		}
	default:
		head, color = "… no result yet: the agent has not finished, or stopped without saying why", ansiYellow
	}
	parts := []string{head}
	if s.Final {
		// An agent that reports none of these (Codex CLI: only tokens)
		// is not shown as having taken no turns, no time and no money;
		// one that reports some (Gemini CLI: time) shows those.
		if s.Turns > 0 || s.Duration > 0 || s.CostUSD > 0 {
			if s.Turns > 0 || s.CostUSD > 0 {
				parts = append(parts, plural(s.Turns, "turn"))
			}
			parts = append(parts, formatDuration(s.Duration))
			if s.Turns > 0 || s.CostUSD > 0 {
				parts = append(parts, formatCost(s.CostUSD))
			}
		}
		if tokens := formatTokens(s); tokens != "" {
			parts = append(parts, tokens)
		}
	}
	// The summary is never truncated: it is the line people look for.
	summary := untrusted.Line(strings.Join(parts, " · "))
	if r.Color {
		summary = color + summary + ansiReset
	}
	fmt.Fprintln(r.W, summary)
	if s.ErrorText != "" {
		r.block("  ", "  ", color, clean(s.ErrorText))
	}
	if s.Skipped > 0 && r.Verbosity >= 2 {
		r.line("", ansiDim, fmt.Sprintf("(skipped %s of non-JSON output)", plural(s.Skipped, "line")))
	}
}

// group separates runs of text from runs of tool lines with a blank line.
func (r *Renderer) group(g string) {
	if r.Verbosity >= 1 && r.lastWas != "" && r.lastWas != g {
		fmt.Fprintln(r.W)
	}
	r.lastWas = g
}

// line writes one line, truncated to the width, in color if enabled.
func (r *Renderer) line(indent, color, s string) {
	// Every line is made safe here too, whatever it was built from (a
	// session's directory, a retry's error, a result's subtype).
	s = r.fit(indent, strings.TrimRight(untrusted.Line(s), " "))
	if r.Color && color != "" {
		s = color + s + ansiReset
	}
	fmt.Fprintf(r.W, "%s%s\n", indent, s)
}

// block writes up to resultLines lines of text, the first after first and
// the others after rest, then says how many lines it left out.
func (r *Renderer) block(first, rest, color, text string) {
	if text == "" {
		return
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		prefix := rest
		if i == 0 {
			prefix = first
		}
		if i == resultLines {
			r.line(rest, ansiDim, fmt.Sprintf("… %d more %s", len(lines)-i, pluralNoun(len(lines)-i, "line")))
			return
		}
		r.line(prefix, color, l)
	}
}

// fit truncates s so that prefix+s fits the width.
func (r *Renderer) fit(prefix, s string) string {
	width := r.Width
	if width <= 0 {
		width = DefaultWidth
	}
	room := width - utf8.RuneCountInString(prefix)
	if room < 1 {
		room = 1
	}
	if utf8.RuneCountInString(s) <= room {
		return s
	}
	runes := []rune(s)
	return string(runes[:room-1]) + "…"
}

// toolFields names, per known tool, the input fields that say the most
// about a call, in order.
var toolFields = map[string][]string{
	"Bash":         {"command"},
	"Read":         {"file_path"},
	"Write":        {"file_path"},
	"Edit":         {"file_path"},
	"MultiEdit":    {"file_path"},
	"NotebookEdit": {"notebook_path"},
	"Grep":         {"pattern", "path"},
	"Glob":         {"pattern", "path"},
	"WebFetch":     {"url"},
	"WebSearch":    {"query"},
	"Task":         {"description"},
	"Agent":        {"description"},
	"Skill":        {"skill"},
	"TodoWrite":    {},
	// Codex CLI (internal/agent's codex parser names the fields).
	"exec_command": {"cmd"},
	"apply_patch":  {"changes"},
	// Gemini CLI.
	"run_shell_command": {"command"},
	"write_file":        {"file_path"},
	"read_file":         {"file_path"},
	"replace":           {"file_path"},
	"glob":              {"pattern", "dir_path"},
	"grep_search":       {"pattern", "dir_path"},
	"list_directory":    {"dir_path"},
	"web_fetch":         {"prompt"},
	"google_web_search": {"query"},
}

// pathFields are shortened to be relative to the session's directory.
var pathFields = map[string]bool{"file_path": true, "notebook_path": true, "path": true, "dir_path": true}

func (r *Renderer) toolDetail(tool string, input json.RawMessage) string {
	var in map[string]json.RawMessage
	fields, known := toolFields[tool]
	if !known || json.Unmarshal(input, &in) != nil {
		return compactJSON(input)
	}
	if tool == "TodoWrite" {
		var todos []json.RawMessage
		json.Unmarshal(in["todos"], &todos)
		return plural(len(todos), "todo")
	}
	var parts []string
	for i, f := range fields {
		v := oneLine(clean(str(in[f])))
		if v == "" {
			continue
		}
		if pathFields[f] {
			v = r.relative(v)
		}
		if i > 0 {
			v = "in " + v // Grep pattern in path
		}
		parts = append(parts, v)
	}
	if len(parts) == 0 {
		return compactJSON(input)
	}
	return strings.Join(parts, " ")
}

func (r *Renderer) relative(path string) string {
	if r.cwd == "" || !filepath.IsAbs(path) {
		return path
	}
	rel, err := filepath.Rel(r.cwd, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return path
	}
	return rel
}

func compactJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil || buf.String() == "{}" || buf.String() == "null" {
		return ""
	}
	return clean(buf.String())
}

// clean makes text the agent or a tool wrote safe to show (see
// untrusted.Text: escape sequences with their payloads, control and
// bidirectional characters, invalid UTF-8), tabs as spaces.
func clean(s string) string {
	return strings.ReplaceAll(untrusted.Text(s), "\t", " ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func plural(n int, noun string) string {
	return fmt.Sprintf("%d %s", n, pluralNoun(n, noun))
}

func pluralNoun(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}

func formatDuration(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func formatCost(usd float64) string {
	switch {
	case usd == 0:
		return "$0"
	case usd >= 1:
		return fmt.Sprintf("$%.2f", usd)
	}
	return fmt.Sprintf("$%.4f", usd)
}

func formatTokens(s Summary) string {
	if s.InputTokens+s.OutputTokens+s.CacheRead+s.CacheCreation == 0 {
		return ""
	}
	out := fmt.Sprintf("tokens %s in, %s out", count(s.InputTokens), count(s.OutputTokens))
	if s.CacheRead+s.CacheCreation > 0 {
		out += fmt.Sprintf(", %s cache read, %s cache write", count(s.CacheRead), count(s.CacheCreation))
	}
	return out
}

func count(n int) string {
	switch {
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	case n >= 1000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
