package run

import (
	"strconv"
	"time"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/store"
)

// StopReasonBudget is the StopReason of a run its budget stopped.
const StopReasonBudget = "budget"

// budgetFlags are the relay's flags that enforce a budget inside the
// sandbox too, as a courtesy: the relay stops the agent promptly when its
// transcript shows the budget spent. The budget does not depend on it: the
// proxy refuses model traffic past it and the host stops the container
// (Supervise); the relay runs as the agent's user, who can stop it.
func budgetFlags(b Budget) []string {
	if b.MaxCostUSD <= 0 && b.Timeout <= 0 {
		return nil
	}
	flags := []string{
		"--budget-transcript=" + containerLogDir + "/" + agentLog,
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
// not, from what the host knows: its clock against the deadline, and the
// proxy's meter. The agent's transcript and anything else it wrote have no
// say.
func budgetReason(r *store.Run, mt egress.Meter, exitedAt time.Time) string {
	if !r.Deadline.IsZero() && !exitedAt.Before(r.Deadline) {
		return timeoutReason(r)
	}
	return meterReason(r, mt, true)
}
