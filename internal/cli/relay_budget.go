package cli

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/airlock-dev/airlock/internal/budget"
)

// relayBudget is the budget the relay enforces on its command, set by
// run.budgetFlags.
type relayBudget struct {
	limits     budget.Limits
	transcript string        // the agent's stream-json log to meter
	stopFile   string        // where to say why the agent was stopped
	grace      time.Duration // between SIGTERM and SIGKILL
}

func (b *relayBudget) addFlags(fl *pflag.FlagSet) {
	fl.Float64Var(&b.limits.MaxCostUSD, "max-cost", 0, "stop the command once the transcript's estimated cost reaches this many USD")
	fl.DurationVar(&b.limits.Timeout, "timeout", 0, "stop the command after this long")
	fl.StringVar(&b.transcript, "budget-transcript", "", "the agent's stream-json transcript, for --max-cost")
	fl.StringVar(&b.stopFile, "budget-stop-file", "", "file recording why the budget stopped the command")
	fl.DurationVar(&b.grace, "budget-grace", 10*time.Second, "time between SIGTERM and SIGKILL when the budget is spent")
}

// enforce watches the budget until ctx ends (the command exited). When the
// budget is spent first it records why, then stops the command: SIGTERM,
// and after the grace period SIGKILL to every process the agent's user
// has in the sandbox, so nothing the agent started outlives its budget.
func (b *relayBudget) enforce(ctx context.Context, child *exec.Cmd, errOut func(string, ...any)) {
	if !b.limits.Set() {
		return
	}
	reason := budget.Watch(ctx, b.transcript, b.limits)
	if reason == "" || ctx.Err() != nil {
		return
	}
	if b.stopFile != "" {
		if err := budget.WriteStop(b.stopFile, reason); err != nil {
			errOut("airlock relay: %v", err)
		}
	}
	errOut("airlock: stopping the agent: %s", reason)
	child.Process.Signal(syscall.SIGTERM)
	select {
	case <-ctx.Done():
	case <-time.After(b.grace):
		// kill(-1) reaches every process this user may signal, except the
		// relay itself and the container's init.
		syscall.Kill(-1, syscall.SIGKILL)
		child.Process.Kill()
	}
}

func relayErrorf(f *Factory) func(string, ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(f.IO.ErrOut, format+"\n", args...)
	}
}
