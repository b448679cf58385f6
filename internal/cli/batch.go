package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// validateBatchFlags checks what depends on how many tasks were given.
func validateBatchFlags(opts runOptions) error {
	if len(opts.Tasks) > 1 {
		if opts.Message != "" || opts.set["message"] {
			return flagErrorf("give either tasks or -m, not both")
		}
		if opts.Name != "" || opts.set["name"] {
			return flagErrorf("--name names one run; with several tasks each run is named by its prompt")
		}
	}
	if opts.Jobs < 0 {
		return flagErrorf("-j must be 0 (all at once) or more, not %d", opts.Jobs)
	}
	if opts.MaxCost < 0 {
		return flagErrorf("--max-cost must be 0 (no limit) or a cost in USD such as 2.50, not %v", opts.MaxCost)
	}
	return nil
}

// applyBudgetFlags layers --max-cost, --timeout and --cache over config.
func applyBudgetFlags(res *config.Resolved, opts runOptions) error {
	if opts.set["max-cost"] {
		if err := res.Set("run.max_cost", strconv.FormatFloat(opts.MaxCost, 'f', -1, 64), "flag --max-cost"); err != nil {
			return flagErrorf("%v", err)
		}
	}
	if opts.set["timeout"] {
		if err := res.Set("run.timeout", opts.Timeout, "flag --timeout"); err != nil {
			return flagErrorf("%v", err)
		}
	}
	for _, c := range opts.Caches {
		if err := res.Set("sandbox.caches", c, "flag --cache"); err != nil {
			return flagErrorf("%v", err)
		}
	}
	return nil
}

// batchTask is one task of a batch, resolved before anything starts.
type batchTask struct {
	task   string
	req    run.Request
	policy string
}

// batchResult is how one task of a batch ended.
type batchResult struct {
	run *store.Run
	err error // it could not be started, or followed
}

// batchRun runs several tasks, each its own run, at most opts.Jobs at once.
// Every task is resolved first, so a bad prompt, flag or config starts
// nothing. Attached, every line of output carries its run's name, and a
// table closes the batch; detached, one run ID per line as each starts
// (with -j, runs start as earlier ones finish, so that returns once the
// last has started). The exit status is 0 only if every run succeeded.
func batchRun(ctx context.Context, f *Factory, project string, opts runOptions) error {
	m, err := f.manager()
	if err != nil {
		return err
	}
	tasks := make([]batchTask, 0, len(opts.Tasks))
	var cfg *config.Config
	for _, t := range opts.Tasks {
		o := opts
		o.Task = t
		req, c, policy, err := f.buildRequest(ctx, project, o)
		if err != nil {
			return fmt.Errorf("task %s: %w", t, err)
		}
		if cfg == nil {
			cfg = c
		}
		tasks = append(tasks, batchTask{task: t, req: req, policy: policy})
	}
	for _, t := range tasks { // the checks of one run, for each
		if err := m.Check(ctx, t.req); err != nil {
			return fmt.Errorf("task %s: %w", t.task, err)
		}
	}
	printPolicies(f.IO.ErrOut, tasks)
	if f.IO.StdinTTY && cfg.Egress.Confirm && !opts.Yes {
		fmt.Fprintf(f.IO.ErrOut, "Start %d runs? [y/N] ", len(tasks))
		answer, _ := bufio.NewReader(f.IO.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return &ExitError{Code: ExitFailure, Message: "not started"}
		}
	}
	detach := opts.Detach || (cfg.Run.Detach && !opts.set["detach"])
	jobs := batchJobs(opts.Jobs, len(tasks))

	width := 0
	for _, t := range tasks {
		width = max(width, len(t.req.Name))
	}
	var mu sync.Mutex // one line at a time on the terminal
	results := make([]batchResult, len(tasks))
	slots := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	started := 0
	for i, t := range tasks {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		m, err := f.manager()
		if err != nil {
			return err
		}
		prefix := fmt.Sprintf("%-*s │ ", width, t.req.Name)
		errOut := &prefixWriter{w: f.IO.ErrOut, mu: &mu, prefix: prefix}
		m.Progress = errOut
		r, err := m.Start(ctx, t.req)
		errOut.Flush()
		if err != nil {
			results[i] = batchResult{err: err}
			fmt.Fprintf(errOut, "not started: %v\n", err)
			errOut.Flush()
			<-slots
			continue
		}
		started++
		if detach {
			mu.Lock()
			fmt.Fprintln(f.IO.Out, r.ID)
			mu.Unlock()
			f.startWatcher(m, r)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			out := &prefixWriter{w: f.IO.Out, mu: &mu, prefix: prefix}
			results[i] = batchFollow(ctx, f, m, r, out, errOut, opts.Verbosity, detach)
		}()
	}
	if detach {
		fmt.Fprintf(f.IO.ErrOut, "Started %d runs. See them with `airlock ls`.\n", started)
		return nil
	}
	wg.Wait()

	fmt.Fprintln(f.IO.ErrOut)
	tw := tabwriter.NewWriter(f.IO.ErrOut, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tRUN\tSTATUS\tCOST\tREASON")
	failed := false
	for i, res := range results {
		switch {
		case res.run != nil:
			r := res.run
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", tasks[i].task, r.ID, r.Status, cost(r.CostUSD), oneLine(untrusted.Line(r.Error)))
			failed = failed || (r.Status != store.StatusSucceeded && r.Status != store.StatusMerged)
		case res.err != nil:
			fmt.Fprintf(tw, "%s\t-\tnot started\t-\t%s\n", tasks[i].task, oneLine(untrusted.Line(res.err.Error())))
			failed = true
		default:
			fmt.Fprintf(tw, "%s\t-\tnot started\t-\tinterrupted\n", tasks[i].task)
			failed = true
		}
	}
	tw.Flush()
	var finished []*store.Run
	for _, res := range results {
		if res.run != nil {
			finished = append(finished, res.run)
		}
	}
	fmt.Fprintln(f.IO.ErrOut, totalCost(finished))
	if len(finished) > 0 {
		fmt.Fprintf(f.IO.ErrOut, "Their work is on branches airlock/<run> in %s.\n", finished[0].Project)
	}
	fmt.Fprintln(f.IO.ErrOut, "Review a run with `airlock diff RUN`, take it with `airlock merge RUN`.")
	switch {
	case ctx.Err() != nil:
		return &ExitError{Code: ExitCanceled}
	case failed:
		return &ExitError{Code: ExitRunFail}
	}
	return nil
}

// batchJobs is how many runs of a batch of n go at once: -j, or all of
// them when -j is 0 (the default) or more than n.
func batchJobs(j, n int) int {
	if j == 0 || j > n {
		return n
	}
	return j
}

// batchFollow follows one run of a batch to its end: its log, prefixed,
// when attached; silently when detached (the slot stays taken until the
// run ends). Interrupted, it stops an attached run, keeping its work.
func batchFollow(ctx context.Context, f *Factory, m *run.Manager, r *store.Run, out, errOut *prefixWriter, verbosity int, detach bool) batchResult {
	if detach {
		// The run is its watcher's. The batch returns once the last run
		// has started, and its context ends then, perhaps before this
		// goroutine first looks at it: that is no interruption, and the
		// run goes on.
		cur, err := m.Wait(ctx, r)
		return batchResult{run: cur, err: err}
	}
	rend := &transcript.Renderer{W: out, Verbosity: verbosity, Width: f.IO.TermWidth}
	parse := run.ParserOf(r)
	done := func() bool {
		cur, err := m.Store.Get(r.ID)
		if err != nil {
			return true
		}
		cur, err = m.Reconcile(ctx, cur)
		return err != nil || cur.Status.Finished()
	}
	err := transcript.Follow(ctx, m.LogPath(r), done, func(line []byte) error {
		if evs, err := parse(line); err == nil {
			for _, ev := range evs {
				rend.Render(ev)
			}
		}
		return nil
	})
	out.Flush()
	if ctx.Err() != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		cur, serr := m.Stop(stopCtx, r, 5*time.Second)
		if serr != nil {
			return batchResult{run: r, err: serr}
		}
		return batchResult{run: cur}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(errOut, "cannot follow the log: %v\n", err)
		errOut.Flush()
	}
	cur, err := m.Wait(ctx, r)
	if err != nil {
		return batchResult{run: r, err: err}
	}
	fmt.Fprintf(errOut, "%s%s", bellFor(f), finishedLine(cur))
	errOut.Flush()
	return batchResult{run: cur}
}

// prefixWriter writes whole lines, each after its prefix, one writer at a
// time: the output of runs going at once stays readable.
type prefixWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix string

	bufMu sync.Mutex
	buf   []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.emit(p.buf[:i+1])
		p.buf = p.buf[i+1:]
	}
}

// Flush writes a last unfinished line.
func (p *prefixWriter) Flush() {
	p.bufMu.Lock()
	defer p.bufMu.Unlock()
	if len(p.buf) > 0 {
		p.emit(append(p.buf, '\n'))
		p.buf = nil
	}
}

func (p *prefixWriter) emit(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, p.prefix)
	p.w.Write(line)
}

// printPolicies shows each distinct egress policy once, naming the tasks
// it applies to when they differ.
func printPolicies(w io.Writer, tasks []batchTask) {
	var order []string
	byPolicy := map[string][]string{}
	for _, t := range tasks {
		if _, ok := byPolicy[t.policy]; !ok {
			order = append(order, t.policy)
		}
		byPolicy[t.policy] = append(byPolicy[t.policy], t.task)
	}
	for _, p := range order {
		if len(order) > 1 {
			fmt.Fprintf(w, "Tasks %s:\n", strings.Join(byPolicy[p], ", "))
		}
		fmt.Fprint(w, p)
	}
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	const max = 80
	if len(s) > max {
		s = s[:max-1] + "…"
	}
	return s
}
