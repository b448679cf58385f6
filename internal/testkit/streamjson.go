package testkit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteTranscript writes a stream-json transcript of about size bytes in
// the shapes Claude Code prints in headless mode: a system init line, then
// turns of an assistant message (text and a tool call) and a user message
// with the tool's result (large outputs, some with escapes and non-ASCII),
// and a closing result line. It is for benchmarks of reading transcripts:
// the same bytes every time for the same size.
func WriteTranscript(w io.Writer, size int64) (int64, error) {
	cw := &countWriter{w: bufio.NewWriterSize(w, 1<<16)}
	enc := json.NewEncoder(cw)
	enc.SetEscapeHTML(false)
	const session = "5f1c2a7e-8b1d-4c3e-9a0f-2b6d8e4f1a3c"
	put := func(v any) error { return enc.Encode(v) }
	if err := put(map[string]any{
		"type": "system", "subtype": "init", "session_id": session,
		"cwd": "/workspace", "model": "claude-sonnet-4-5",
		"tools":               []string{"Bash", "Read", "Write", "Edit", "Grep", "Glob", "TodoWrite"},
		"permissionMode":      "bypassPermissions",
		"apiKeySource":        "ANTHROPIC_API_KEY",
		"mcp_servers":         []any{},
		"slash_commands":      []string{"compact", "review"},
		"output_style":        "default",
		"claude_code_version": "2.0.30",
	}); err != nil {
		return cw.n, err
	}
	tools := []struct{ name, field, value string }{
		{"Bash", "command", "go test ./... 2>&1 | tail -n 200"},
		{"Read", "file_path", "/workspace/internal/server/handler.go"},
		{"Grep", "pattern", `func \(s \*Server\) Handle`},
		{"Edit", "file_path", "/workspace/internal/server/handler.go"},
	}
	for turn := 0; cw.n < size-2048; turn++ {
		tool := tools[turn%len(tools)]
		id := fmt.Sprintf("toolu_01%022d", turn)
		if err := put(map[string]any{
			"type": "assistant", "session_id": session, "parent_tool_use_id": nil,
			"message": map[string]any{
				"id": fmt.Sprintf("msg_01%022d", turn), "type": "message", "role": "assistant",
				"model": "claude-sonnet-4-5", "stop_reason": nil,
				"content": []any{
					map[string]any{"type": "text", "text": fmt.Sprintf("Step %d: I'll look at the handler and run the tests again to see what fails.", turn)},
					map[string]any{"type": "tool_use", "id": id, "name": tool.name, "input": map[string]any{tool.field: tool.value, "description": "check"}},
				},
				"usage": map[string]any{"input_tokens": 1200 + turn, "output_tokens": 85, "cache_read_input_tokens": 24000, "cache_creation_input_tokens": 310},
			},
		}); err != nil {
			return cw.n, err
		}
		if err := put(map[string]any{
			"type": "user", "session_id": session, "parent_tool_use_id": nil,
			"message": map[string]any{
				"role": "user",
				"content": []any{map[string]any{
					"type": "tool_result", "tool_use_id": id, "is_error": turn%17 == 5,
					"content": toolOutput(turn),
				}},
			},
		}); err != nil {
			return cw.n, err
		}
	}
	if err := put(map[string]any{
		"type": "result", "subtype": "success", "is_error": false, "session_id": session,
		"duration_ms": 912345, "duration_api_ms": 700123, "num_turns": 400, "result": "All tests pass now.",
		"total_cost_usd": 3.21,
		"usage":          map[string]any{"input_tokens": 480000, "output_tokens": 34000, "cache_read_input_tokens": 9600000, "cache_creation_input_tokens": 124000},
	}); err != nil {
		return cw.n, err
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

// toolOutput is a tool's output of 8 to 64 KiB: test logs with tabs,
// quotes, a colour escape and some non-ASCII, as real outputs have.
func toolOutput(turn int) string {
	var b strings.Builder
	lines := 100 + (turn*37)%700
	for i := range lines {
		switch i % 9 {
		case 0:
			fmt.Fprintf(&b, "=== RUN   TestHandler/case_%d\n", i)
		case 3:
			fmt.Fprintf(&b, "\t\x1b[32mok\x1b[0m  \tgithub.com/example/server/internal/case%d\t0.%03ds\n", i, i%1000)
		case 5:
			fmt.Fprintf(&b, "    handler_test.go:%d: got \"%d\", want \"résumé — ✓\"\n", 40+i, i)
		default:
			fmt.Fprintf(&b, "--- PASS: TestHandler/case_%d (0.00s) some more output to fill the line a bit\n", i)
		}
	}
	return b.String()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
