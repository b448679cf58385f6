package transcript

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/untrusted"
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

// TestFollowHostileFile: the transcript is the agent's to replace. A FIFO
// (which blocked open forever), a link to a host file, or a directory is an
// error at once, and a file that never ends stops when ctx does.
func TestFollowHostileFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(`{"type":"assistant","secret":"host"}`+"\n"), 0o600)
	tests := []struct {
		name string
		make func(p string) error
	}{
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
		{"symlink", func(p string) error { return os.Symlink(secret, p) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.jsonl")
			if err := tt.make(path); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			var lines []string
			go func() {
				errc <- Follow(context.Background(), path, func() bool { return false }, func(line []byte) error {
					lines = append(lines, string(line))
					return nil
				})
			}()
			select {
			case err := <-errc:
				if !errors.Is(err, untrusted.ErrNotRegular) {
					t.Errorf("Follow = %v, want ErrNotRegular", err)
				}
				if len(lines) > 0 {
					t.Errorf("read %q through a %s", lines, tt.name)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("Follow of a %s blocked", tt.name)
			}
		})
	}
}

func TestFollowCancelAndLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.jsonl")
	// A line over MaxLine, never finished, then a file that never ends.
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString(`{"type":"assistant"}` + "\n")
	f.Truncate(MaxLine + 1<<20)
	f.Seek(0, io.SeekEnd)
	f.WriteString("\n" + `{"type":"user"}` + "\n")
	// Cancelled once both lines are read (the file never ends, so only
	// the cancellation ends Follow); the timeout only bounds a broken one,
	// so a loaded machine cannot make it fail.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lines []string
	err = Follow(ctx, path, func() bool { return false }, func(line []byte) error {
		lines = append(lines, string(line))
		if len(lines) == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Follow = %v, want the context's cancellation", err)
	}
	if want := []string{`{"type":"assistant"}`, `{"type":"user"}`}; !slices.Equal(lines, want) {
		t.Errorf("lines = %.80q, want %q", lines, want)
	}
}

// Buffered output is flushed whenever following has read all there is:
// a line appended later shows before the run ends, not only at the end.
func TestFollowIdleFlushesBeforeTheEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.jsonl")
	if err := os.WriteFile(path, []byte(`{"type":"assistant","message":{"content":[{"type":"text","text":"first"}]}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var shown atomic.Value // what a reader of the flushed output sees
	shown.Store("")
	var buf []byte
	var sawFirstEarly atomic.Bool
	followed := make(chan error, 1)
	go func() {
		open := func() (*os.File, error) { return os.Open(path) }
		followed <- FollowFileIdle(context.Background(), open, func() bool { return false }, func(line []byte) error {
			buf = append(append(buf, line...), '\n')
			return nil
		}, func() error {
			shown.Store(string(buf))
			return nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for shown.Load().(string) == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	sawFirstEarly.Store(strings.Contains(shown.Load().(string), "first"))
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"type":"assistant","message":{"content":[{"type":"text","text":"second"}]}}` + "\n" + `{"type":"result","subtype":"success"}` + "\n")
	f.Close()
	if err := <-followed; err != nil {
		t.Fatal(err)
	}
	if !sawFirstEarly.Load() {
		t.Error("the first line was not flushed before more was written")
	}
	if got := string(buf); !(len(got) > 0 && slices.Equal(splitLines(got)[:2], []string{
		`{"type":"assistant","message":{"content":[{"type":"text","text":"first"}]}}`,
		`{"type":"assistant","message":{"content":[{"type":"text","text":"second"}]}}`,
	})) {
		t.Errorf("followed %q, want both lines, the second appended later", got)
	}
}

func splitLines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimSuffix(s, "\n"), "\n") {
		out = append(out, l)
	}
	return append(out, "", "")
}

// An engine whose mounts are copies (Kubernetes) brings the transcript
// home by renaming a newer, longer copy over it: the follower goes on in
// the new file where it was, without repeating or losing a line.
func TestFollowReplacedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.jsonl")
	first := `{"type":"system","subtype":"init"}` + "\n" + `{"type":"assistant","message":{"id":"a","con`
	rest := `tent":[]}}` + "\n" + `{"type":"user","message":{"content":[]}}` + "\n"
	if err := os.WriteFile(path, []byte(first), 0o644); err != nil {
		t.Fatal(err)
	}
	var finished atomic.Bool
	go func() {
		time.Sleep(300 * time.Millisecond)
		tmp := filepath.Join(dir, ".copy")
		if err := os.WriteFile(tmp, []byte(first+rest), 0o644); err != nil {
			t.Error(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Error(err)
		}
		time.Sleep(300 * time.Millisecond)
		finished.Store(true)
	}()
	lines, err := collect(t, context.Background(), path, finished.Load)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"type":"system","subtype":"init"}`, `{"type":"assistant","message":{"id":"a","content":[]}}`, `{"type":"user","message":{"content":[]}}`}
	if !slices.Equal(lines, want) {
		t.Errorf("lines = %q\nwant %q", lines, want)
	}
}

// The sandbox may replace its transcript mid-follow too, with a link to a
// host file or a FIFO: the follower keeps the file it has (never reads
// through the link, never blocks on the FIFO) and ends when the run does.
func TestFollowReplacedByHostile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte(`{"type":"assistant","secret":"host"}`+"\n"), 0o600)
	tests := []struct {
		name string
		make func(p string) error
	}{
		{"symlink", func(p string) error { return os.Symlink(secret, p) }},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.jsonl")
			first := `{"type":"system","subtype":"init"}` + "\n"
			if err := os.WriteFile(path, []byte(first), 0o644); err != nil {
				t.Fatal(err)
			}
			var finished atomic.Bool
			go func() {
				time.Sleep(300 * time.Millisecond)
				tmp := path + ".new"
				if err := tt.make(tmp); err != nil {
					t.Error(err)
				}
				if err := os.Rename(tmp, path); err != nil {
					t.Error(err)
				}
				time.Sleep(1500 * time.Millisecond) // past a reopen check
				finished.Store(true)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			lines, err := collect(t, ctx, path, finished.Load)
			if err != nil {
				t.Fatalf("Follow = %v (a %s in the transcript's place)", err, tt.name)
			}
			if want := []string{`{"type":"system","subtype":"init"}`}; !slices.Equal(lines, want) {
				t.Errorf("lines = %q, want %q: read through a %s", lines, want, tt.name)
			}
		})
	}
}
