package run

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/store"
)

// What stopped a run is decided from the host's clock and the proxy's meter
// alone.
func TestBudgetReason(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &store.Run{CreatedAt: created, Timeout: "20s", Deadline: created.Add(20 * time.Second), MaxCostUSD: 0.5, MaxTurns: 4}
	tests := []struct {
		name   string
		meter  egress.Meter
		exited time.Time
		want   string
	}{
		{"within budget", egress.Meter{ModelRequests: 2, CostUSD: 0.1}, created.Add(5 * time.Second), ""},
		{"exited at the deadline", egress.Meter{}, created.Add(20 * time.Second), "budget: reached the timeout of 20s"},
		{"exited after the deadline", egress.Meter{}, created.Add(92 * time.Second), "budget: reached the timeout of 20s"},
		{"cost spent", egress.Meter{CostUSD: 0.5123}, created.Add(time.Second), "budget: reached the cost limit of $0.50 ($0.51 metered)"},
		{"all turns used, then ended", egress.Meter{ModelRequests: 4}, created.Add(time.Second), "budget: reached max turns (4)"},
		{"more requests than turns", egress.Meter{ModelRequests: 5}, created.Add(time.Second), "budget: reached max turns (4)"},
		{"proxy refused", egress.Meter{Exhausted: "max cost reached\x1b]0;x\x07"}, created.Add(time.Second), "budget: max cost reached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := budgetReason(r, tt.meter, tt.exited); got != tt.want {
				t.Errorf("budgetReason = %q, want %q", got, tt.want)
			}
		})
	}
	// Still running with every turn used is not yet a budget stop: the run
	// may be finishing with its last one.
	if got := meterReason(r, egress.Meter{ModelRequests: 4}, false); got != "" {
		t.Errorf("running at max turns: %q, want no reason", got)
	}
}

func TestBudgetFlags(t *testing.T) {
	if got := budgetFlags(Budget{}); got != nil {
		t.Errorf("no budget: flags %v, want none", got)
	}
	got := strings.Join(budgetFlags(Budget{MaxCostUSD: 2.5}), " ")
	if !strings.Contains(got, "--max-cost=2.5") || strings.Contains(got, "--timeout") {
		t.Errorf("flags %q", got)
	}
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}
