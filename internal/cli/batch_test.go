package cli

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
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
