package run

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The stop file is the sandbox's to write: it is read without following
// links, and only printable text of bounded length comes out.
func TestReadStopFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.json")
	os.WriteFile(secret, []byte(`{"reason":"host secret"}`), 0o600)
	tests := []struct {
		name    string
		prepare func(path string)
		want    string
	}{
		{"missing", func(string) {}, ""},
		{"reason", func(p string) { os.WriteFile(p, []byte(`{"reason":"reached the timeout of 5s"}`), 0o644) }, "reached the timeout of 5s"},
		{"control characters", func(p string) { os.WriteFile(p, []byte(`{"reason":"a\u001b[2Jb\nc"}`), 0o644) }, "ab c"},
		{"too long", func(p string) { os.WriteFile(p, []byte(`{"reason":"`+strings.Repeat("x", 1000)+`"}`), 0o644) }, strings.Repeat("x", 200)},
		{"symbolic link", func(p string) { os.Symlink(secret, p) }, ""},
		{"fifo", func(p string) { mkfifo(t, p) }, ""},
		{"not JSON", func(p string) { os.WriteFile(p, []byte("stopped"), 0o644) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), budgetStopFile)
			tt.prepare(path)
			if got := readStopFile(path); got != tt.want {
				t.Errorf("readStopFile = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBudgetFlags(t *testing.T) {
	if got := budgetFlags(Budget{}); got != nil {
		t.Errorf("no budget: flags %v, want none", got)
	}
	got := strings.Join(budgetFlags(Budget{MaxCostUSD: 2.5}), " ")
	if !strings.Contains(got, "--max-cost=2.5") || strings.Contains(got, "--timeout") || !strings.Contains(got, "--budget-stop-file=/airlock/log/budget.json") {
		t.Errorf("flags %q", got)
	}
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}
