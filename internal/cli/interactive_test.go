package cli

import "testing"

func TestRemotePath(t *testing.T) {
	tests := []struct {
		arg, ref, path string
		ok             bool
	}{
		{"shell-1a2b:/workspace/out.log", "shell-1a2b", "/workspace/out.log", true},
		{"fix:relative", "fix", "relative", true},
		{"./a:b", "", "", false},
		{"/abs/a:b", "", "", false},
		{"plain", "", "", false},
		{":/x", "", "", false},
	}
	for _, tt := range tests {
		ref, p, ok := remotePath(tt.arg)
		if ref != tt.ref || p != tt.path || ok != tt.ok {
			t.Errorf("remotePath(%q) = %q, %q, %v", tt.arg, ref, p, ok)
		}
	}
}

func TestTypedPrompt(t *testing.T) {
	tests := []struct {
		line string
		want string
		ok   bool
	}{
		{`{"type":"user","message":{"role":"user","content":"Fix the test"}}`, "Fix the test", true},
		{`{"type":"user","isMeta":true,"message":{"role":"user","content":"Caveat"}}`, "", false},
		{`{"type":"user","message":{"role":"user","content":"<command-name>/exit</command-name>"}}`, "", false},
		{`{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"ok"}]}}`, "", false},
		{`{"type":"assistant","message":{"role":"assistant","content":"x"}}`, "", false},
	}
	for _, tt := range tests {
		got, ok := typedPrompt([]byte(tt.line))
		if got != tt.want || ok != tt.ok {
			t.Errorf("typedPrompt(%s) = %q, %v", tt.line, got, ok)
		}
	}
}
