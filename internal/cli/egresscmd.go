package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/transcript"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

type egressOptions struct {
	Follow bool
	Denied bool
	JSON   bool

	AllProjects bool
}

func newEgressCmd(f *Factory) *cobra.Command {
	var opts egressOptions
	cmd := &cobra.Command{
		Use:   "egress [RUN]",
		Short: "Show every connection a run's agent made or tried, and the proxy's decision",
		Long: `Show a run's egress log: every request and connection the agent made or tried
through its proxy, allowed or denied, with the rule or reason, the address
dialled, bytes each way and duration. --json prints the log's JSON lines as
written (schema in docs/egress.md; on a terminal, without escape sequences).`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			return egressRun(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Follow, "follow", "f", false, "follow the log until the run ends")
	cmd.Flags().BoolVar(&opts.Denied, "denied", false, "only denied attempts")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON lines")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func egressRun(ctx context.Context, f *Factory, ref string, opts egressOptions) error {
	r, m, err := f.runAndManager(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	if cur, err := m.Reconcile(ctx, r); err == nil {
		r = cur
	}
	path := m.AuditLogPath(r)
	handle := func(line []byte) error {
		var rec egress.Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return nil // a torn last line
		}
		if opts.Denied && rec.Allowed {
			return nil
		}
		if opts.JSON {
			if f.IO.StdoutTTY { // the agent chose the hosts and paths
				line = []byte(untrusted.Text(string(line)))
			}
			_, err := fmt.Fprintf(f.IO.Out, "%s\n", line)
			return err
		}
		writeRecord(f.IO.Out, rec)
		return nil
	}
	if opts.Follow && !r.Status.Finished() {
		done := f.finished(ctx, m, r.ID)
		return transcript.Follow(ctx, path, done, handle)
	}
	file, err := untrusted.Open(path)
	if os.IsNotExist(err) {
		fmt.Fprintf(f.IO.ErrOut, "Run %s has no egress log.\n", r.ID)
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	_, err = eachLine(file, handle)
	return err
}

// writeRecord prints one decision. The proxy wrote the record, but the
// agent chose its host, path and method (and so part of the reason): all
// of them are shown as safe text.
func writeRecord(w io.Writer, rec egress.Record) {
	rec.Host, rec.Path, rec.Method = untrusted.Line(rec.Host), untrusted.Line(rec.Path), untrusted.Line(rec.Method)
	rec.Rule, rec.Reason, rec.Addr = untrusted.Line(rec.Rule), untrusted.Line(rec.Reason), untrusted.Line(rec.Addr)
	verdict := "allow"
	why := rec.Rule
	if !rec.Allowed {
		verdict = "DENY "
		why = rec.Reason
	}
	target := fmt.Sprintf("%s:%d", rec.Host, rec.Port)
	if rec.Path != "" {
		target += " " + rec.Path
	}
	fmt.Fprintf(w, "%s  %s  %-7s %s", rec.Time.Local().Format(time.TimeOnly), verdict, rec.Method, target)
	if rec.Addr != "" {
		fmt.Fprintf(w, "  → %s", rec.Addr)
	}
	if why != "" {
		fmt.Fprintf(w, "  (%s)", why)
	}
	if rec.Allowed {
		fmt.Fprintf(w, "  ↑%d ↓%d %dms", rec.BytesUp, rec.BytesDown, rec.DurationMS)
	}
	if rec.Scan != "" {
		fmt.Fprintf(w, "  [secret scan: %s]", untrusted.Line(rec.Scan))
	}
	fmt.Fprintln(w)
}
