package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/agent"
)

// newAgentHookCmd is the Claude Code hook the sandbox runs (from the
// airlock binary mounted in it) when the agent waits for input: it appends
// one event line to the run's events file, which the host watches.
func newAgentHookCmd(f *Factory) *cobra.Command {
	var appendTo string
	cmd := &cobra.Command{
		Use:    "agent-hook --append FILE",
		Short:  "Record a Claude Code notification hook's event (used inside the sandbox)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ev, err := agent.HookEvent(f.IO.In, f.Now())
			if err != nil {
				return err
			}
			line, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			file, err := os.OpenFile(appendTo, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
			if err != nil {
				return fmt.Errorf("agent-hook: %w", err)
			}
			// One write per line: concurrent hooks never interleave.
			if _, err := file.Write(append(line, '\n')); err != nil {
				file.Close()
				return fmt.Errorf("agent-hook: %w", err)
			}
			return file.Close()
		},
	}
	cmd.Flags().StringVar(&appendTo, "append", "", "the events file to append to")
	cmd.MarkFlagRequired("append")
	return cmd
}
