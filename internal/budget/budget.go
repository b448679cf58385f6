// Package budget enforces a run's limits from inside the sandbox: it reads
// the agent's transcript as it is written, estimates what the run has cost,
// watches the clock, and says when a limit is spent. The relay process runs
// it next to the agent, so a budget holds for detached runs with no airlock
// process left on the host.
package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// Limits are what a run may spend; zero values mean no limit.
type Limits struct {
	MaxCostUSD float64
	Timeout    time.Duration
}

// Set reports whether any limit is set.
func (l Limits) Set() bool { return l.MaxCostUSD > 0 || l.Timeout > 0 }

// errSpent ends the transcript follow once the cost limit is reached.
var errSpent = errors.New("cost budget spent")

// Watch blocks until a limit is spent, and then returns the reason in words
// for people ("reached the timeout (45m0s)"). It returns "" when ctx ends
// first (the agent exited on its own) or when the transcript ends with a
// result line. The transcript at path need not exist yet.
func Watch(ctx context.Context, path string, l Limits) string {
	if !l.Set() {
		<-ctx.Done()
		return ""
	}
	wctx := ctx
	if l.Timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, l.Timeout)
		defer cancel()
	}
	var m Meter
	err := errors.New("no cost limit")
	if l.MaxCostUSD > 0 {
		done := func() bool { return wctx.Err() != nil }
		err = transcript.Follow(wctx, path, done, func(line []byte) error {
			m.AddLine(line)
			if m.CostUSD() >= l.MaxCostUSD {
				return errSpent
			}
			return nil
		})
	}
	switch {
	case errors.Is(err, errSpent):
		return fmt.Sprintf("reached the cost limit of $%.2f (estimated $%.2f spent)", l.MaxCostUSD, m.CostUSD())
	case err == nil:
		// A result line: the agent has finished on its own and is exiting.
		return ""
	}
	<-wctx.Done()
	if ctx.Err() == nil && l.Timeout > 0 {
		return fmt.Sprintf("reached the timeout of %s", l.Timeout)
	}
	return ""
}

// Stop is the file the relay leaves in the run's log directory when it
// stopped the agent for its budget; the host records the run as stopped
// with this reason.
type Stop struct {
	Reason string `json:"reason"`
}

// WriteStop records why the agent was stopped, atomically.
func WriteStop(path, reason string) error {
	data, err := json.Marshal(Stop{Reason: reason})
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("record budget stop: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record budget stop: %w", err)
	}
	return nil
}
