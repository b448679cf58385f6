package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestInteractiveArgs(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"new session", Options{SessionID: "s1", Model: "m", MaxTurns: 3}, []string{"claude", "--dangerously-skip-permissions", "--session-id=s1", "--model=m"}},
		{"resume", Options{SessionID: "s1", Resume: true}, []string{"claude", "--dangerously-skip-permissions", "--resume=s1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Claude{}).Interactive(tt.o); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The seed answers every first-run dialog, and keeps what a resumed
// session's files already hold.
func TestSeedMergesIntoExistingConfig(t *testing.T) {
	home := t.TempDir()
	os.WriteFile(filepath.Join(home, ".claude.json"), []byte(`{"numStartups":4,"projects":{"/other":{"hasTrustDialogAccepted":false}}}`), 0o600)
	err := (Claude{}).Seed(home, SeedOptions{Interactive: true, Workdir: "/workspace", Env: []string{"ANTHROPIC_API_KEY=" + PlaceholderAPIKey}, HookCommand: "hook"}, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	g := readJSON(t, filepath.Join(home, ".claude.json"))
	if g["hasCompletedOnboarding"] != true || g["numStartups"] != float64(4) {
		t.Fatalf(".claude.json = %v", g)
	}
	projects := g["projects"].(map[string]any)
	if projects["/workspace"].(map[string]any)["hasTrustDialogAccepted"] != true || projects["/other"] == nil {
		t.Fatalf("projects = %v", projects)
	}
	approved := g["customApiKeyResponses"].(map[string]any)["approved"].([]any)
	if len(approved) != 1 || !strings.HasSuffix(PlaceholderAPIKey, approved[0].(string)) || len(approved[0].(string)) != 20 {
		t.Fatalf("approved keys = %v", approved)
	}
	s := readJSON(t, filepath.Join(home, ".claude", "settings.json"))
	if s["skipDangerousModePermissionPrompt"] != true || s["hooks"] == nil {
		t.Fatalf("settings.json = %v", s)
	}
	if fi, _ := os.Stat(filepath.Join(home, ".claude.json")); fi.Mode().Perm() != 0o600 {
		t.Fatalf(".claude.json mode %v", fi.Mode())
	}
}

func TestHookEvent(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ev, err := HookEvent(strings.NewReader(`{"session_id":"s","message":"Claude is waiting for your input","notification_type":"idle_prompt"}`), now)
	if err != nil {
		t.Fatal(err)
	}
	want := Event{Event: EventWaiting, Time: now, Text: "Claude is waiting for your input", Type: "idle_prompt", SessionID: "s"}
	if ev != want {
		t.Fatalf("got %+v, want %+v", ev, want)
	}
	if _, err := HookEvent(strings.NewReader("not json"), now); err == nil {
		t.Fatal("no error for bad input")
	}
}
