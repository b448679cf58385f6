package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

type logsOptions struct {
	Follow    bool
	Raw       bool
	Verbosity int
	// Setup shows the output of the run's setup commands instead.
	Setup bool

	AllProjects bool
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
  --raw  the agent's stream-json transcript exactly as written (on a
         terminal, without escape sequences)
  -f     follow until the run ends
  --setup  the output of the run's setup commands ([sandbox] setup, the
         prompt's setup:), which run before the agent`,
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
	cmd.Flags().BoolVar(&opts.Setup, "setup", false, "show the output of the run's setup commands")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func logsRun(ctx context.Context, f *Factory, ref string, opts logsOptions) error {
	r, m, err := f.runAndManager(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	if cur, err := m.Reconcile(ctx, r); err == nil {
		r = cur
	}
	if opts.Setup {
		return showSetupLog(f, m, r)
	}
	return showLog(ctx, f, m, r, opts)
}

// showLog renders (or copies, with Raw) a run's transcript, following it
// while the run is going if asked, and closes with the run's outcome.
func showLog(ctx context.Context, f *Factory, m *run.Manager, r *store.Run, opts logsOptions) error {
	// One write per screenful, not per line: a transcript can have a
	// million lines. Flushed when following catches up, and at the end.
	out := bufio.NewWriterSize(f.IO.Out, 64<<10)
	defer out.Flush()
	rend := &transcript.Renderer{W: out, Verbosity: opts.Verbosity, Color: f.IO.StdoutTTY, Width: f.IO.TermWidth}
	// The closing summary is folded in while rendering, not read again
	// from the file afterwards (unless following, see below).
	sum := transcript.Summary{Outcome: transcript.OutcomeUnknown}
	haveSum := false
	parse := run.ParserOf(r)
	handle := func(line []byte) error {
		if opts.Raw {
			// The bytes as written go to a pipe; a terminal gets them
			// without escape sequences (docs/cli.md).
			if f.IO.StdoutTTY {
				line = []byte(untrusted.Text(string(line)))
			}
			out.Write(line)
			return out.WriteByte('\n')
		}
		evs, err := parse(line)
		if err != nil {
			if len(bytes.TrimSpace(line)) > 0 {
				sum.Skipped++
			}
			return nil
		}
		for _, ev := range evs {
			sum.Add(ev)
		}
		// A prompt typed in an interactive session is a line of no known
		// kind to the parser: only such lines need the second look.
		if len(evs) == 1 && evs[0].Kind == transcript.KindUnknown {
			if p, ok := typedPrompt(line); ok {
				fmt.Fprintf(out, "\n❯ %s\n", untrusted.Text(p))
				return nil
			}
		}
		for _, ev := range evs {
			rend.Render(ev)
		}
		return nil
	}
	if opts.Follow && !r.Status.Finished() {
		done := f.finished(ctx, m, r.ID)
		open := func() (*os.File, error) { return m.OpenTranscript(r) }
		// A run can end before its agent writes anything (its setup
		// failed): then the outcome below says why.
		if err := transcript.FollowFileIdle(ctx, open, done, handle, out.Flush); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if cur, err := f.storeGet(r.ID); err == nil {
			r = cur
		}
	} else {
		// The transcript is the agent's file: no links, no FIFOs, and at
		// most its last transcript.MaxWindow bytes.
		file, err := m.OpenTranscript(r)
		switch {
		case os.IsNotExist(err):
			if r.Status == store.StatusCreating || r.Status == store.StatusRunning {
				fmt.Fprintln(f.IO.ErrOut, "The agent has not written anything yet (follow it with -f).")
			}
		case errors.Is(err, untrusted.ErrNotRegular):
			// The agent replaced its transcript: say so, and still show
			// what airlock itself knows of the run.
			fmt.Fprintf(f.IO.ErrOut, "warning: not showing the log of run %s: %v\n", r.ID, err)
		case err != nil:
			return fmt.Errorf("read log of run %s: %w", r.ID, err)
		default:
			long, err := eachLine(file, handle)
			file.Close()
			if err != nil {
				return err
			}
			sum.Skipped += long
			haveSum = r.Kind != run.KindShell // a shell run's summary is not its session log's
		}
	}
	if opts.Raw {
		return out.Flush()
	}
	if !haveSum {
		sum = m.Summary(r)
	}
	if opts.Verbosity >= 1 {
		switch {
		case r.Kind == run.KindShell: // interactive Claude Code writes no result line
		case r.Status.Finished() && sum.Outcome != transcript.OutcomeSucceeded && sum.Outcome != transcript.OutcomeFailed:
			// The agent wrote no result because it was ended: say by
			// whom and when, not that there is no result "yet".
			fmt.Fprintln(out, "\n"+endedWithoutResult(r))
		default:
			rend.Finish(sum)
		}
		if r.Status.Finished() {
			closing(out, r, f.Now())
		}
	} else if r.Error != "" {
		fmt.Fprintf(out, "\n%s: %s\n", r.Status, untrusted.Text(r.Error))
	}
	return out.Flush()
}

// closing is the run's own line under the agent's summary: what airlock
// knows that the agent does not (the status, and why it failed).
func closing(w io.Writer, r *store.Run, now time.Time) {
	fmt.Fprintf(w, "Run %s: %s", r.ID, r.Status)
	if d := run.Elapsed(r, now); d > 0 {
		fmt.Fprintf(w, " after %s", d.Round(100*time.Millisecond))
	}
	fmt.Fprintln(w)
	if r.Turns > 0 {
		requests := "requests"
		if r.Turns == 1 {
			requests = "request"
		}
		fmt.Fprintf(w, "Metered by the proxy: %d model %s, %s\n", r.Turns, requests, cost(r.CostUSD))
	}
	if r.EgressAllowed+r.EgressDenied > 0 {
		fmt.Fprintf(w, "Egress: %d allowed, %d denied (airlock egress %s)\n", r.EgressAllowed, r.EgressDenied, r.ID)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "Reason: %s\n", untrusted.Text(r.Error))
	}
	if r.HarvestError != "" {
		fmt.Fprintf(w, "Work not brought back: %s\n", untrusted.Text(r.HarvestError))
	}
	if r.HarvestWarning != "" {
		fmt.Fprintf(w, "Warning: %s\n", untrusted.Text(r.HarvestWarning))
	}
}

// endedWithoutResult says how a finished run whose agent wrote no result
// ended: stopped by whom, or failed, and when.
func endedWithoutResult(r *store.Run) string {
	var s string
	switch {
	case r.Status != store.StatusStopped:
		s = fmt.Sprintf("■ %s: the agent wrote no result", r.Status)
	case r.StopReason == run.StopReasonUser:
		s = "■ stopped by you (airlock stop or kill), before the agent wrote a result"
	case r.StopReason == run.StopReasonBudget:
		s = "■ stopped by its budget, before the agent wrote a result"
	case r.StopReason == "timeout":
		s = "■ stopped by the host: its time (--timeout) ran out, before the agent wrote a result"
	case r.StopReason == "disk":
		s = "■ stopped by the host: its disk quota was full, before the agent wrote a result"
	case r.StopReason != "":
		s = fmt.Sprintf("■ stopped (%s), before the agent wrote a result", r.StopReason)
	default:
		s = "■ stopped before the agent wrote a result"
	}
	if !r.FinishedAt.IsZero() {
		s += " at " + r.FinishedAt.Local().Format("2006-01-02 15:04:05 MST")
	}
	return s
}

// eachLine calls fn for each non-empty line of r, without its newline. A
// line over transcript.MaxLine is skipped, and counted in long: the file
// is the agent's.
func eachLine(r io.Reader, fn func([]byte) error) (long int, err error) {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		line, isLong, err := untrusted.ReadLine(br, transcript.MaxLine)
		if isLong {
			long++
		}
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			if len(line) > 0 {
				if ferr := fn(line); ferr != nil {
					return long, ferr
				}
			}
		}
		if err == io.EOF {
			return long, nil
		}
		if err != nil {
			return long, err
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
