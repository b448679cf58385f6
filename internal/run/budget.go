package run

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/budget"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// budgetStopFile is where the relay says why it stopped the agent for its
// budget, in the run's log directory.
const budgetStopFile = "budget.json"

// StopReasonBudget is the StopReason of a run its budget stopped.
const StopReasonBudget = "budget"

// budgetFlags are the relay's flags that enforce a budget inside the
// sandbox: the relay meters the agent's transcript and watches the clock,
// so the budget holds with no airlock process on the host. Turns are
// counted by the agent itself (--max-turns).
func budgetFlags(b Budget) []string {
	if b.MaxCostUSD <= 0 && b.Timeout <= 0 {
		return nil
	}
	flags := []string{
		"--budget-transcript=" + containerLogDir + "/" + agentLog,
		"--budget-stop-file=" + containerLogDir + "/" + budgetStopFile,
	}
	if b.MaxCostUSD > 0 {
		flags = append(flags, "--max-cost="+strconv.FormatFloat(b.MaxCostUSD, 'f', -1, 64))
	}
	if b.Timeout > 0 {
		flags = append(flags, "--timeout="+b.Timeout.String())
	}
	return flags
}

// budgetReason says why a finished run's budget stopped it, or "" if it did
// not: the relay's stop file, or the agent's own max-turns result.
func (m *Manager) budgetReason(r *store.Run, sum transcript.Summary) string {
	if reason := readStopFile(filepath.Join(m.Store.RunDir(r.ID), "log", budgetStopFile)); reason != "" {
		return "budget: " + reason
	}
	if sum.Final && sum.Subtype == "error_max_turns" {
		return fmt.Sprintf("budget: reached max turns (%d)", r.MaxTurns)
	}
	return ""
}

// readStopFile reads the relay's stop file. The log directory is the
// agent's to write, so the file is read as untrusted: never through a
// symbolic link, at most 4 KiB, and shown only as one line of printable text.
func readStopFile(path string) string {
	data, err := untrusted.ReadFile(path, 4096)
	if err != nil {
		return ""
	}
	var s struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(data, &s) != nil {
		return ""
	}
	reason := []rune(untrusted.Line(s.Reason))
	const max = 200
	if len(reason) > max {
		reason = reason[:max]
	}
	return strings.TrimSpace(string(reason))
}

// estimateCost is the agent's own total for a transcript with a result
// line, and otherwise (an agent stopped before it could write one) the
// budget meter's estimate from the transcript.
func (m *Manager) estimateCost(r *store.Run, sum transcript.Summary) float64 {
	if sum.Final {
		return sum.CostUSD
	}
	f, _, err := untrusted.OpenTail(m.LogPath(r), transcript.MaxWindow)
	if err != nil {
		return 0
	}
	defer f.Close()
	var meter budget.Meter
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, long, err := untrusted.ReadLine(br, transcript.MaxLine)
		if !long && len(line) > 0 {
			meter.AddLine(bytes.TrimSuffix(line, []byte("\n")))
		}
		if err != nil {
			return meter.CostUSD()
		}
	}
}
