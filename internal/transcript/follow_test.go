package transcript

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// writer appends to a transcript from another goroutine, as the container
// does, in pieces that split lines.
func writeSlowly(t *testing.T, path string, pieces []string, delay time.Duration) <-chan struct{} {
	t.Helper()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		time.Sleep(delay) // the file does not exist at first
		f, err := os.Create(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		for _, p := range pieces {
			if _, err := f.WriteString(p); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(delay)
		}
	}()
	return finished
}

func collect(t *testing.T, ctx context.Context, path string, done func() bool) ([]string, error) {
	t.Helper()
	var lines []string
	err := Follow(ctx, path, done, func(line []byte) error {
		lines = append(lines, string(line))
		return nil
	})
	return lines, err
}

func TestFollowStopsAtResult(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.jsonl")
	pieces := []string{
		`{"type":"system","subtype":"init"}` + "\n" + `{"type":"assis`,
		`tant","message":{"content":[]}}` + "\n",
		`{"type":"result","subtype":"success"}` + "\n",
		"written after the result\n",
	}
	writeSlowly(t, path, pieces, 150*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lines, err := collect(t, ctx, path, func() bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"type":"system","subtype":"init"}`, `{"type":"assistant","message":{"content":[]}}`, `{"type":"result","subtype":"success"}`}
	if !slices.Equal(lines, want) {
		t.Errorf("lines = %q, want %q", lines, want)
	}
}

func TestFollowDrainsAfterDone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.jsonl")
	var writerGone atomic.Bool
	finished := writeSlowly(t, path, []string{"one\n", "two\n", "three, never finished"}, 100*time.Millisecond)
	go func() { <-finished; writerGone.Store(true) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lines, err := collect(t, ctx, path, writerGone.Load)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"one", "two", "three, never finished"}; !slices.Equal(lines, want) {
		t.Errorf("lines = %q, want %q", lines, want)
	}
}

func TestFollowMissingFile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := collect(t, ctx, filepath.Join(t.TempDir(), "never.jsonl"), func() bool { return true })
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Follow of a file that never appears = %v, want fs.ErrNotExist", err)
	}
}

func TestFollowCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.jsonl")
	if err := os.WriteFile(path, []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := collect(t, ctx, path, func() bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's error", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Follow took %v to notice cancellation", elapsed)
	}
}

func TestFollowCallbackError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.jsonl")
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("reader went away")
	calls := 0
	err := Follow(context.Background(), path, func() bool { return true }, func([]byte) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("err, calls = %v, %d; want the callback's error after 1 call", err, calls)
	}
}
