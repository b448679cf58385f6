package cli

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/memengine"
	"github.com/airlock-dev/airlock/internal/store"
)

func TestValidateBatchFlags(t *testing.T) {
	tests := []struct {
		name    string
		opts    runOptions
		wantErr string
	}{
		{"one task", runOptions{Tasks: []string{"a"}, Name: "x", Jobs: 1}, ""},
		{"batch", runOptions{Tasks: []string{"a", "b"}, Jobs: 2}, ""},
		{"batch with -m", runOptions{Tasks: []string{"a", "b"}, Message: "hi"}, "give either tasks or -m, not both"},
		{"batch with --name", runOptions{Tasks: []string{"a", "b"}, Name: "x"}, "--name names one run"},
		{"negative -j", runOptions{Tasks: []string{"a"}, Jobs: -1}, "-j must be 0 (all at once) or more, not -1"},
		{"negative cost", runOptions{Tasks: []string{"a"}, MaxCost: -1}, "--max-cost must be 0 (no limit)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateBatchFlags(tt.opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want prefix %q", err, tt.wantErr)
			}
		})
	}
}

// Writers of several runs at once never mix within a line.
func TestPrefixWriterKeepsLinesWhole(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &prefixWriter{w: &out, mu: &mu, prefix: name + " │ "}
			for i := range 200 {
				fmt.Fprintf(w, "%s-%d ", name, i)
				fmt.Fprintf(w, "end\n")
			}
			fmt.Fprint(w, "unfinished")
			w.Flush()
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3*201 {
		t.Fatalf("%d lines, want %d", len(lines), 3*201)
	}
	for _, l := range lines {
		name, rest, ok := strings.Cut(l, " │ ")
		if !ok || !(strings.HasPrefix(rest, name+"-") && strings.HasSuffix(rest, " end") || rest == "unfinished") {
			t.Errorf("mixed line %q", l)
		}
	}
}

// A detached batch returns once its runs have started, which ends its
// context. The goroutine that holds a run's slot may first look at that
// context only then: it must leave the run to its watcher, not stop it as
// if the user had pressed Ctrl-C (CI saw "stopped by the user" on a run
// nobody stopped).
func TestDetachedBatchNeverStopsItsRuns(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	eng := memengine.New("agent:1")
	eng.Programs = func(sandbox.Spec) memengine.Program {
		return func(p *memengine.Proc) int { <-p.Terminated(); return 143 }
	}
	ctx := context.Background()
	id, err := eng.Create(ctx, sandbox.Spec{Name: "airlock-task-1", Image: "agent:1", User: "1000:1000"})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r := &store.Run{ID: "task-1", Name: "task", Status: store.StatusRunning, Container: id, CreatedAt: now, StartedAt: now}
	if err := st.Create(r); err != nil {
		t.Fatal(err)
	}
	m := &run.Manager{Store: st, Engine: eng}
	var mu sync.Mutex
	var out, errOut bytes.Buffer
	ended, cancel := context.WithCancel(ctx)
	cancel() // the batch command has returned
	batchFollow(ended, &Factory{IO: &IOStreams{}}, m, r,
		&prefixWriter{w: &out, mu: &mu}, &prefixWriter{w: &errOut, mu: &mu}, 0, true)

	got, err := st.Get(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.StopRequested || got.Status != store.StatusRunning {
		t.Errorf("after the detached batch returned, its run is %s (stop requested: %v, %q), want running", got.Status, got.StopRequested, got.Error)
	}
	if s, err := eng.Inspect(ctx, id); err != nil || s.Status != sandbox.StatusRunning {
		t.Errorf("the run's container is %v (%v), want running", s.Status, err)
	}
}
