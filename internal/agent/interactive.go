package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Interactive implements Agent: Claude Code's own terminal UI, with no -p,
// no stream-json, and the same session, model and permission flags as a
// headless run.
func (Claude) Interactive(o Options) []string {
	return append([]string{"claude", "--dangerously-skip-permissions"}, sessionArgs(o)...)
}

// SeedOptions are what the pre-seeded configuration depends on.
type SeedOptions struct {
	// Interactive says a person will use the agent's terminal UI.
	Interactive bool
	// Workdir is the folder the agent works in (trusted without asking).
	Workdir string
	// Env is the placeholder credentials the agent sees, as NAME=value
	// (APIAuth.Env): some agents must be told to accept them.
	Env []string
	// Model is the model asked for; "" is the agent's default.
	Model string
	// EventsPath is the file the agent's hooks append events to (inside the
	// container).
	EventsPath string
	// HookCommand is the command, inside the container, that reads a hook's
	// JSON on standard input and appends one event line to EventsPath.
	HookCommand string
}

// Seed writes Claude Code's user configuration into home (the agent's home
// directory on the host) so that the first start skips every first-run
// dialog: theme and onboarding, the custom API key question, folder trust
// for the workdir and the bypass-permissions warning. The keys were found by
// answering the dialogs of Claude Code 2.1.330 and diffing ~/.claude.json and
// ~/.claude/settings.json. Existing files (a resumed session's) are merged
// into, not replaced.
func (Claude) Seed(home string, o SeedOptions, uid, gid int) error {
	if !o.Interactive {
		return nil // headless Claude Code asks nothing
	}
	apiKey := ""
	for _, kv := range o.Env {
		if v, ok := strings.CutPrefix(kv, "ANTHROPIC_API_KEY="); ok {
			apiKey = v
		}
	}
	global := map[string]any{
		"hasCompletedOnboarding": true,
		"theme":                  "dark",
		"projects": map[string]any{
			o.Workdir: map[string]any{
				"hasTrustDialogAccepted": true,
				"allowedTools":           []string{},
			},
		},
	}
	if apiKey != "" {
		// Claude Code remembers an approved key by its last 20 characters.
		global["customApiKeyResponses"] = map[string]any{
			"approved": []string{keySuffix(apiKey)},
			"rejected": []string{},
		}
	}
	settings := map[string]any{
		"skipDangerousModePermissionPrompt": true,
	}
	if o.HookCommand != "" {
		settings["hooks"] = map[string]any{
			"Notification": []any{map[string]any{
				"matcher": "",
				"hooks":   []any{map[string]any{"type": "command", "command": o.HookCommand}},
			}},
		}
	}
	if err := mergeJSONFile(filepath.Join(home, ".claude.json"), global, uid, gid); err != nil {
		return fmt.Errorf("pre-seed the agent's configuration: %w", err)
	}
	dir := filepath.Join(home, ".claude")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pre-seed the agent's configuration: %w", err)
	}
	if err := os.Lchown(dir, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("pre-seed the agent's configuration: %w", err)
	}
	if err := mergeJSONFile(filepath.Join(dir, "settings.json"), settings, uid, gid); err != nil {
		return fmt.Errorf("pre-seed the agent's configuration: %w", err)
	}
	return nil
}

func keySuffix(key string) string {
	if len(key) <= 20 {
		return key
	}
	return key[len(key)-20:]
}

// mergeJSONFile sets top-level keys of the JSON object in path (made if
// missing), merging one level into nested objects such as "projects".
func mergeJSONFile(path string, set map[string]any, uid, gid int) error {
	cur := map[string]any{}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, &cur); err != nil || cur == nil {
			cur = map[string]any{} // a corrupt file is replaced, as Claude Code would
		}
	}
	for k, v := range set {
		old, okOld := cur[k].(map[string]any)
		nv, okNew := v.(map[string]any)
		if okOld && okNew {
			for kk, vv := range nv {
				old[kk] = vv
			}
			continue
		}
		cur[k] = v
	}
	out, err := json.MarshalIndent(cur, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
		return err
	}
	if err := os.Lchown(path, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return err
	}
	return nil
}

// Event is one line of a run's events file (/airlock/log/events.jsonl),
// written by the agent's hooks for the host to act on (run.AgentEvent reads
// it).
type Event struct {
	Event     string    `json:"event"` // "waiting": the agent waits for input
	Time      time.Time `json:"time"`
	Text      string    `json:"text,omitempty"` // the agent's own words
	Type      string    `json:"type,omitempty"` // Claude Code's notification_type, e.g. idle_prompt
	SessionID string    `json:"session_id,omitempty"`
}

// EventWaiting is the event of an agent that waits for a person.
const EventWaiting = "waiting"

// HookEvent turns a Claude Code Notification hook's input (JSON on standard
// input) into an Event.
func HookEvent(r io.Reader, now time.Time) (Event, error) {
	var in struct {
		SessionID        string `json:"session_id"`
		Message          string `json:"message"`
		NotificationType string `json:"notification_type"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&in); err != nil {
		return Event{}, fmt.Errorf("read the hook's input: %w", err)
	}
	return Event{Time: now.UTC(), Event: EventWaiting, Text: in.Message, Type: in.NotificationType, SessionID: in.SessionID}, nil
}
