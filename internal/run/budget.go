package run

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/airlock-dev/airlock/internal/budget"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
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
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(f, 4096))
	var s struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(data, &s) != nil {
		return ""
	}
	reason := strings.Map(func(c rune) rune {
		if !unicode.IsPrint(c) {
			return ' '
		}
		return c
	}, s.Reason)
	const max = 200
	if len(reason) > max {
		reason = reason[:max]
	}
	return strings.TrimSpace(reason)
}

// estimateCost is the agent's own total for a transcript with a result
// line, and otherwise (an agent stopped before it could write one) the
// budget meter's estimate from the transcript.
func (m *Manager) estimateCost(r *store.Run, sum transcript.Summary) float64 {
	if sum.Final {
		return sum.CostUSD
	}
	f, err := os.Open(m.LogPath(r))
	if err != nil {
		return 0
	}
	defer f.Close()
	var meter budget.Meter
	eachLine(f, meter.AddLine)
	return meter.CostUSD()
}

func eachLine(r io.Reader, fn func([]byte)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
}
