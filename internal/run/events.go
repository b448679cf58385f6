package run

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/notify"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// eventsFile is where the sandbox reports what the agent is doing beyond
// its transcript, one JSON object per line, for example
// {"event":"waiting","time":"2025-01-02T15:04:05Z","text":"..."} when an
// interactive agent waits for input.
const eventsFile = "events.jsonl"

// AgentEvent is one line of a run's events log.
type AgentEvent struct {
	Event string    `json:"event"`
	Time  time.Time `json:"time,omitzero"`
	Text  string    `json:"text,omitempty"`
}

// EventsPath is the run's events log on the host.
func (m *Manager) EventsPath(r *store.Run) string {
	return filepath.Join(m.Store.RunDir(r.ID), "log", eventsFile)
}

// minNotifyGap spaces "waiting" notifications: the events log is the
// sandbox's to write, and must not become a way to flood a webhook.
const minNotifyGap = 10 * time.Second

// NotifyEvents sends a notification for each "waiting" event the sandbox
// appends to the run's events log, until ctx ends. The log need not exist.
func (m *Manager) NotifyEvents(ctx context.Context, r *store.Run) {
	var last time.Time
	done := func() bool { return ctx.Err() != nil }
	transcript.Follow(ctx, m.EventsPath(r), done, func(line []byte) error {
		var ev AgentEvent
		if json.Unmarshal(line, &ev) != nil || ev.Event != notify.EventWaiting {
			return nil
		}
		now := m.now()
		if now.Sub(last) < minNotifyGap {
			return nil
		}
		last = now
		cur, err := m.Store.Get(r.ID)
		if err != nil {
			return err
		}
		m.Notify(ctx, cur, notify.EventWaiting, cleanText(ev.Text))
		return nil
	})
}

// cleanText makes text from the sandbox safe to show: one line, no escape
// or control characters (untrusted.Line), bounded.
func cleanText(s string) string {
	r := []rune(untrusted.Line(s))
	if len(r) > 200 {
		r = r[:200]
	}
	return strings.TrimSpace(string(r))
}
