package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
)

type logsOptions struct {
	Follow    bool
	Raw       bool
	Verbosity int
}

func newLogsCmd(f *Factory) *cobra.Command {
	var opts logsOptions
	cmd := &cobra.Command{
		Use:     "logs [RUN]",
		Aliases: []string{"log"},
		Short:   "Show what the agent did",
		Long: `Show a run's agent log rendered for people.

  -v 0   the agent's text only
  -v 1   text, one line per tool call, and a closing summary (default)
  -v 2   also the tools' results
  --raw  the agent's stream-json transcript exactly as written
  -f     follow until the run ends`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Verbosity < 0 || opts.Verbosity > 2 {
				return flagErrorf("-v must be 0, 1 or 2, not %d", opts.Verbosity)
			}
			return logsRun(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "follow the log until the run ends")
	cmd.Flags().BoolVar(&opts.Raw, "raw", false, "print the stream-json transcript as written")
	cmd.Flags().IntVarP(&opts.Verbosity, "verbosity", "v", 1, "detail: 0, 1 or 2")
	return cmd
}

func logsRun(ctx context.Context, f *Factory, ref string, opts logsOptions) error {
	r, m, err := f.runAndManager(ctx, ref)
	if err != nil {
		return err
	}
	if cur, err := m.Reconcile(ctx, r); err == nil {
		r = cur
	}
	return showLog(ctx, f, m, r, opts)
}

// showLog renders (or copies, with Raw) a run's transcript, following it
// while the run is going if asked, and closes with the run's outcome.
func showLog(ctx context.Context, f *Factory, m *run.Manager, r *store.Run, opts logsOptions) error {
	path := m.TranscriptPath(r) // an interactive run's is Claude Code's session log
	rend := &transcript.Renderer{W: f.IO.Out, Verbosity: opts.Verbosity, Color: f.IO.StdoutTTY, Width: f.IO.TermWidth}
	handle := func(line []byte) error {
		if opts.Raw {
			_, err := fmt.Fprintf(f.IO.Out, "%s\n", line)
			return err
		}
		if p, ok := typedPrompt(line); ok {
			fmt.Fprintf(f.IO.Out, "\n❯ %s\n", p)
			return nil
		}
		if evs, err := transcript.ParseLine(line); err == nil {
			for _, ev := range evs {
				rend.Render(ev)
			}
		}
		return nil
	}
	if opts.Follow && !r.Status.Finished() {
		done := f.finished(ctx, m, r.ID)
		if err := transcript.Follow(ctx, path, done, handle); err != nil {
			return err
		}
		if cur, err := f.storeGet(r.ID); err == nil {
			r = cur
		}
	} else {
		file, err := os.Open(path)
		switch {
		case os.IsNotExist(err):
			if r.Status == store.StatusCreating || r.Status == store.StatusRunning {
				fmt.Fprintln(f.IO.ErrOut, "The agent has not written anything yet (follow it with -f).")
			}
		case err != nil:
			return fmt.Errorf("read log of run %s: %w", r.ID, err)
		default:
			err := eachLine(file, handle)
			file.Close()
			if err != nil {
				return err
			}
		}
	}
	if opts.Raw {
		return nil
	}
	sum := m.Summary(r)
	if opts.Verbosity >= 1 {
		if r.Kind != run.KindShell { // interactive Claude Code writes no result line
			rend.Finish(sum)
		}
		if r.Status.Finished() {
			closing(f.IO.Out, r, f.Now())
		}
	} else if r.Error != "" {
		fmt.Fprintf(f.IO.Out, "\n%s: %s\n", r.Status, r.Error)
	}
	return nil
}

// closing is the run's own line under the agent's summary: what airlock
// knows that the agent does not (the status, and why it failed).
func closing(w io.Writer, r *store.Run, now time.Time) {
	fmt.Fprintf(w, "Run %s: %s", r.ID, r.Status)
	if d := run.Elapsed(r, now); d > 0 {
		fmt.Fprintf(w, " after %s", d.Round(100*time.Millisecond))
	}
	fmt.Fprintln(w)
	if r.EgressAllowed+r.EgressDenied > 0 {
		fmt.Fprintf(w, "Egress: %d allowed, %d denied (airlock egress %s)\n", r.EgressAllowed, r.EgressDenied, r.ID)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "Reason: %s\n", r.Error)
	}
	if r.HarvestError != "" {
		fmt.Fprintf(w, "Work not brought back: %s\n", r.HarvestError)
	}
	if r.HarvestWarning != "" {
		fmt.Fprintf(w, "Warning: %s\n", r.HarvestWarning)
	}
}

func eachLine(r io.Reader, fn func([]byte) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			if len(line) > 0 {
				if ferr := fn(line); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (f *Factory) storeGet(id string) (*store.Run, error) {
	st, err := f.Store()
	if err != nil {
		return nil, err
	}
	return st.Get(id)
}
