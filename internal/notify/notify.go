// Package notify tells people that a run needs them: it ended, or the agent
// is waiting for input. Notifications go to the desktop (notify-send, when
// installed) and to a webhook, as configured in [notify].
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"time"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// Events a notification is about.
const (
	EventFinished = "finished" // the run ended, whatever the outcome
	EventWaiting  = "waiting"  // the agent waits for input
)

// Config says where notifications go ([notify]).
type Config struct {
	Desktop bool   `json:"desktop,omitempty"`
	Webhook string `json:"webhook,omitempty"`
}

// Enabled reports whether any notification is configured.
func (c Config) Enabled() bool { return c.Desktop || c.Webhook != "" }

// Message is one notification; its JSON form is the webhook's body.
type Message struct {
	Run     string  `json:"run"`
	Name    string  `json:"name"`
	Project string  `json:"project"`
	Status  string  `json:"status"`
	CostUSD float64 `json:"cost_usd"`
	Turns   int     `json:"turns"`
	Reason  string  `json:"reason"`
	Event   string  `json:"event"`
}

// safe is m with every string made safe to show: the reason quotes the
// agent (its stderr, its transcript's errors), and a webhook's JSON reaches
// chat clients and terminals that would act on escape sequences.
func (m Message) safe() Message {
	for _, p := range []*string{&m.Run, &m.Name, &m.Project, &m.Status, &m.Event} {
		*p = untrusted.Line(*p)
	}
	m.Reason = untrusted.Text(m.Reason)
	return m
}

// Title and Text are the message in words for people.
func (m Message) Title() string {
	if m.Event == EventWaiting {
		return fmt.Sprintf("airlock: %s is waiting for input", m.Run)
	}
	return fmt.Sprintf("airlock: %s %s", m.Run, m.Status)
}

// Text is the body of a desktop notification.
func (m Message) Text() string {
	s := fmt.Sprintf("%s, %d turns", m.Project, m.Turns)
	if m.CostUSD > 0 {
		s += fmt.Sprintf(", $%.2f", m.CostUSD)
	}
	if m.Reason != "" {
		s += "\n" + m.Reason
	}
	return s
}

// Sender delivers notifications. The zero value uses the real network and
// the real notify-send.
type Sender struct {
	HTTP     *http.Client
	LookPath func(string) (string, error)
	// Command runs a program to completion.
	Command func(ctx context.Context, name string, args ...string) error
}

// Timeout bounds one delivery: a dead webhook must not hold up the command
// that happened to record a run's end.
const Timeout = 5 * time.Second

// Send delivers m as cfg says. A missing notify-send is not an error: the
// desktop notification is a convenience where one is installed.
func (s Sender) Send(ctx context.Context, cfg Config, m Message) error {
	m = m.safe()
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var errs []error
	if cfg.Desktop {
		if err := s.desktop(ctx, m); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Webhook != "" {
		if err := s.webhook(ctx, cfg.Webhook, m); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s Sender) desktop(ctx context.Context, m Message) error {
	look := s.LookPath
	if look == nil {
		look = exec.LookPath
	}
	path, err := look("notify-send")
	if err != nil {
		return nil
	}
	run := s.Command
	if run == nil {
		run = func(ctx context.Context, name string, args ...string) error {
			return exec.CommandContext(ctx, name, args...).Run()
		}
	}
	if err := run(ctx, path, "--app-name=airlock", "--", m.Title(), m.Text()); err != nil {
		return fmt.Errorf("desktop notification: %w", err)
	}
	return nil
}

func (s Sender) webhook(ctx context.Context, hook string, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return errors.New("webhook: not a valid URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "airlock")
	hc := s.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	resp, err := hc.Do(req)
	if err != nil {
		// The URL may hold a token (many webhooks are authorised by their
		// path), so errors never show it.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}
