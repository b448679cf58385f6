package run

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/internal/notify"
	"github.com/airlock-dev/airlock/internal/store"
)

// notifyFile holds the run's notification settings, resolved when it
// started, so whichever airlock process records the run's end (the
// attached `run`, the detached watcher, `ls`, `wait`) notifies the same way
// whatever its own directory and configuration. It sits in the run
// directory itself, which the sandbox never sees: a webhook URL can be a
// secret.
const notifyFile = "notify.json"

// notifyLog collects notifications that could not be delivered.
const notifyLog = "notify.log"

func writeNotifyConfig(dir string, c notify.Config) error {
	if !c.Enabled() {
		return nil
	}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, notifyFile), data, 0o600); err != nil {
		return fmt.Errorf("record notification settings: %w", err)
	}
	return nil
}

func (m *Manager) notifyConfig(r *store.Run) notify.Config {
	var c notify.Config
	data, err := os.ReadFile(filepath.Join(m.Store.RunDir(r.ID), notifyFile))
	if err == nil {
		json.Unmarshal(data, &c)
	}
	return c
}

// Notify sends the run's notifications for event (notify.EventFinished or
// notify.EventWaiting). Delivery failures are reported on Progress and kept
// in the run's notify.log, never returned: a notification is not worth
// failing the command that happened to record the run's end.
func (m *Manager) Notify(ctx context.Context, r *store.Run, event, reason string) {
	cfg := m.notifyConfig(r)
	if !cfg.Enabled() {
		return
	}
	if reason == "" {
		reason = r.Error
	}
	msg := notify.Message{
		Run:     r.ID,
		Name:    r.Name,
		Project: r.Project,
		Status:  string(r.Status),
		CostUSD: r.CostUSD,
		Turns:   r.Turns,
		Reason:  reason,
		Event:   event,
	}
	err := notify.Sender{}.Send(ctx, cfg, msg)
	if err == nil {
		return
	}
	m.progress("warning: run %s: notification not delivered: %v", r.ID, err)
	f, ferr := os.OpenFile(filepath.Join(m.Store.RunDir(r.ID), notifyLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if ferr != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s: %v\n", m.now().Format(time.RFC3339), event, err)
}

// notifyFinished is called once per run, by the process whose finish
// moved the run out of running.
func (m *Manager) notifyFinished(r *store.Run) {
	m.Notify(context.Background(), r, notify.EventFinished, "")
}
