package budget

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func assistant(id, model string, in, out int) string {
	return `{"type":"assistant","message":{"id":"` + id + `","model":"` + model + `","usage":{"input_tokens":` +
		itoa(in) + `,"output_tokens":` + itoa(out) + `}}}`
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestMeter(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  float64
	}{
		{"nothing", nil, 0},
		{"sonnet", []string{assistant("a", "claude-sonnet-4-5-20250929", 1_000_000, 0)}, 3},
		{"one message, several blocks, counted once", []string{
			assistant("a", "claude-sonnet-4-5", 1_000_000, 0),
			assistant("a", "claude-sonnet-4-5", 1_000_000, 100_000),
		}, 3 + 1.5},
		{"models priced apart", []string{
			assistant("a", "claude-opus-4-1-20250805", 0, 1_000_000),
			assistant("b", "claude-haiku-4-5", 1_000_000, 0),
		}, 75 + 1},
		{"unknown model at the highest price", []string{assistant("a", "gateway-model", 1_000_000, 0)}, 15},
		{"other lines ignored", []string{`{"type":"user","message":{"usage":{"input_tokens":5}}}`, `not json`}, 0},
		{"result replaces the estimate", []string{
			assistant("a", "claude-sonnet-4-5", 1_000_000, 0),
			`{"type":"result","subtype":"success","total_cost_usd":3.25}`,
		}, 3.25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Meter
			for _, l := range tt.lines {
				m.AddLine([]byte(l))
			}
			if got := m.CostUSD(); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("CostUSD = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWatch(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		lines  []string // written one by one while Watch runs
		want   string   // substring of the reason; "" means none
	}{
		{"timeout", Limits{Timeout: 300 * time.Millisecond}, nil, "reached the timeout of 300ms"},
		{"cost", Limits{MaxCostUSD: 0.5, Timeout: 10 * time.Second}, []string{
			assistant("a", "claude-sonnet-4-5", 100_000, 0),
			assistant("b", "claude-sonnet-4-5", 100_000, 0),
		}, "reached the cost limit of $0.50 (estimated $0.60 spent)"},
		{"finished under budget", Limits{MaxCostUSD: 5, Timeout: 10 * time.Second}, []string{
			assistant("a", "claude-sonnet-4-5", 100_000, 0),
			`{"type":"result","subtype":"success","total_cost_usd":0.3}`,
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.jsonl")
			go func() {
				f, err := os.Create(path)
				if err != nil {
					return
				}
				defer f.Close()
				for _, l := range tt.lines {
					time.Sleep(50 * time.Millisecond)
					f.WriteString(l + "\n")
				}
			}()
			start := time.Now()
			got := Watch(context.Background(), path, tt.limits)
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("Watch = %q, want %q", got, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Watch took %s", d)
			}
		})
	}
}

func TestWatchEndsWithTheAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if got := Watch(ctx, filepath.Join(t.TempDir(), "none.jsonl"), Limits{MaxCostUSD: 1, Timeout: time.Hour}); got != "" {
		t.Errorf("Watch after the agent exited = %q, want no reason", got)
	}
}

func TestWriteStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "budget.json")
	if err := WriteStop(path, "reached the timeout of 1s"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	var s Stop
	if err := json.Unmarshal(data, &s); err != nil || s.Reason != "reached the timeout of 1s" {
		t.Fatalf("budget.json = %s (%v)", data, err)
	}
}
