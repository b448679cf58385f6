package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWebhook(t *testing.T) {
	var body map[string]any
	var ctype string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		json.Unmarshal(data, &body)
		ctype = r.Header.Get("Content-Type")
	}))
	defer srv.Close()
	msg := Message{Run: "fix-1", Name: "fix", Project: "/p", Status: "stopped", CostUSD: 1.5, Turns: 7, Reason: "budget: x", Event: EventFinished}
	if err := (Sender{}).Send(context.Background(), Config{Webhook: srv.URL + "/hook"}, msg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"run": "fix-1", "name": "fix", "project": "/p", "status": "stopped", "cost_usd": 1.5, "turns": 7.0, "reason": "budget: x", "event": "finished"}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("body[%s] = %v, want %v", k, body[k], v)
		}
	}
	if ctype != "application/json" {
		t.Errorf("Content-Type = %q", ctype)
	}
}

func TestWebhookErrorsHideTheURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	hooks := []string{srv.URL + "/secret-token", "http://127.0.0.1:1/secret-token"}
	for _, hook := range hooks {
		err := (Sender{}).Send(context.Background(), Config{Webhook: hook}, Message{Event: EventFinished})
		if err == nil || strings.Contains(err.Error(), "secret-token") {
			t.Errorf("Send to %s: error %v, want one that does not show the URL", hook, err)
		}
	}
}

func TestDesktop(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + out + "\n"
	if err := os.WriteFile(filepath.Join(dir, "notify-send"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	msg := Message{Run: "fix-1", Status: "succeeded", Project: "/p", Turns: 3, Event: EventFinished}
	if err := (Sender{}).Send(context.Background(), Config{Desktop: true}, msg); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(out)
	if !strings.Contains(string(data), "airlock: fix-1 succeeded") {
		t.Errorf("notify-send got %q", data)
	}

	t.Setenv("PATH", t.TempDir())
	if err := (Sender{}).Send(context.Background(), Config{Desktop: true}, msg); err != nil {
		t.Errorf("without notify-send: %v, want no error", err)
	}
}

// TestNotificationsAreSafeText: the reason quotes the agent; neither the
// webhook's JSON nor notify-send's arguments may carry its escapes.
func TestNotificationsAreSafeText(t *testing.T) {
	const hostile = "boom\x1b]52;c;Y3VybCBldmls\x07\x1b[2K\u009b1A\u202egnp"
	var raw []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	dir := t.TempDir()
	out := filepath.Join(dir, "args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + out + "\n"
	if err := os.WriteFile(filepath.Join(dir, "notify-send"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	msg := Message{Run: "fix-1", Name: "n\x1b]0;t\x07", Status: "failed", Project: "/p", Reason: hostile, Event: EventFinished}
	if err := (Sender{}).Send(context.Background(), Config{Desktop: true, Webhook: srv.URL}, msg); err != nil {
		t.Fatal(err)
	}
	var body Message
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(out)
	for what, s := range map[string]string{"webhook reason": body.Reason, "webhook name": body.Name, "notify-send": string(args)} {
		if strings.ContainsAny(s, "\x1b\x07\u009b\u202e") {
			t.Errorf("%s carries escapes: %q", what, s)
		}
	}
	if body.Reason != "boomgnp" {
		t.Errorf("reason = %q, want the text without its escapes", body.Reason)
	}
}
