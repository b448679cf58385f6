package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bringing copies the user's files into the run's home, skipping links,
// and refuses MCP servers that carry credentials.
func TestClaudeBring(t *testing.T) {
	host, run := t.TempDir(), t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("s3cret"), 0o600)
	os.MkdirAll(filepath.Join(host, ".claude", "commands", "sub"), 0o755)
	os.WriteFile(filepath.Join(host, ".claude", "commands", "sub", "fix.md"), []byte("fix it"), 0o644)
	os.Symlink(secret, filepath.Join(host, ".claude", "commands", "leak.md"))
	uid, gid := os.Getuid(), os.Getgid()

	if err := (Claude{}).Bring("commands", host, run, uid, gid); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(run, ".claude", "commands", "sub", "fix.md")); err != nil || string(data) != "fix it" {
		t.Errorf("fix.md: %q, %v", data, err)
	}
	if _, err := os.Lstat(filepath.Join(run, ".claude", "commands", "leak.md")); err == nil {
		t.Error("a link in the user's commands was brought in")
	}
	if err := (Claude{}).Bring("instructions", host, run, uid, gid); err == nil || !strings.Contains(err.Error(), "CLAUDE.md") {
		t.Errorf("bringing a missing CLAUDE.md: %v", err)
	}

	os.WriteFile(filepath.Join(host, ".claude.json"), []byte(`{"mcpServers":{"docs":{"type":"http","url":"https://docs.example/mcp"}},"oauthAccount":{"token":"x"}}`), 0o600)
	if err := (Claude{}).Bring("mcp", host, run, uid, gid); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(run, ".claude.json"))
	if !strings.Contains(string(got), "docs.example/mcp") || strings.Contains(string(got), "oauthAccount") {
		t.Errorf(".claude.json brought in: %s", got)
	}
	os.WriteFile(filepath.Join(host, ".claude.json"), []byte(`{"mcpServers":{"gh":{"command":"gh-mcp","env":{"GITHUB_TOKEN":"ghp_x"}}}}`), 0o600)
	if err := (Claude{}).Bring("mcp", host, t.TempDir(), uid, gid); err == nil || !strings.Contains(err.Error(), `server "gh"`) || !strings.Contains(err.Error(), "[[egress.inject]]") {
		t.Errorf("an MCP server with credentials: %v", err)
	}
}
