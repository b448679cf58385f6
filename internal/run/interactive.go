package run

import "github.com/airlock-dev/airlock/internal/agent"

// shellCommand is the container command of an interactive run.
// TODO(interactive): run the agent's terminal UI inside tmux.
func shellCommand(a agent.Claude, o agent.Options) []string {
	return a.Command(o)
}
