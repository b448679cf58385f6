package untrusted

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// withDeadline fails the test if fn blocks: a FIFO must never hang a read.
func withDeadline(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("blocked for 5s")
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	mk := map[string]func(p string) error{
		"regular":  func(p string) error { return os.WriteFile(p, []byte("ok"), 0o600) },
		"hardlink": func(p string) error { return os.Link(secret, p) },
		"symlink":  func(p string) error { return os.Symlink(secret, p) },
		"dangling": func(p string) error { return os.Symlink(filepath.Join(dir, "nothing"), p) },
		"fifo":     func(p string) error { return syscall.Mkfifo(p, 0o600) },
		"dir":      func(p string) error { return os.Mkdir(p, 0o700) },
		"socket": func(p string) error {
			l, err := net.Listen("unix", p)
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		},
	}
	tests := []struct {
		kind string
		want string // "" when the open succeeds
	}{
		{"regular", ""},
		{"hardlink", ""}, // a link to a file the agent could read anyway: still a regular file
		{"symlink", "is a symbolic link"},
		{"dangling", "is a symbolic link"},
		{"fifo", "is a FIFO"},
		{"dir", "is a directory"},
		{"socket", "is a socket"},
		{"missing", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			p := filepath.Join(dir, tt.kind)
			if m := mk[tt.kind]; m != nil {
				if err := m(p); err != nil {
					t.Fatal(err)
				}
			}
			withDeadline(t, func() {
				f, err := Open(p)
				if tt.want == "" {
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					f.Close()
					return
				}
				if err == nil {
					f.Close()
					t.Fatalf("Open(%s) succeeded", tt.kind)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("Open(%s) = %v, want %q", tt.kind, err, tt.want)
				}
				if tt.kind != "missing" && !errors.Is(err, ErrNotRegular) {
					t.Errorf("Open(%s) = %v, not ErrNotRegular", tt.kind, err)
				}
			})
			withDeadline(t, func() {
				if _, err := ReadFile(p, 100); (err == nil) != (tt.want == "") {
					t.Errorf("ReadFile: %v", err)
				}
				if data, err := Tail(p, 100); (err == nil) != (tt.want == "") || strings.Contains(string(data), "secret") && tt.kind != "hardlink" {
					t.Errorf("Tail: %q, %v", data, err)
				}
			})
		})
	}
}

// sparse makes a file of size bytes that takes no disk space, ending in end.
func sparse(t *testing.T, size int64, end string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "huge")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(end), size-int64(len(end))); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHugeSparseFile(t *testing.T) {
	p := sparse(t, 20<<30, "\n{\"last\":1}\n")
	start := time.Now()
	if _, err := ReadFile(p, 1<<20); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadFile = %v, want ErrTooLarge", err)
	}
	data, err := Tail(p, 12)
	if err != nil || string(data) != "{\"last\":1}\n" && len(data) != 12 {
		t.Errorf("Tail = %q, %v", data, err)
	}
	f, skipped, err := OpenTail(p, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	line, long, err := ReadLine(br, 1<<20)
	if string(line) != "{\"last\":1}\n" || long || err != nil {
		t.Errorf("first line after OpenTail = %q, %v, %v (skipped %d)", line, long, err, skipped)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s for a sparse 20 GB file", d)
	}
}

func TestOpenTailNoNewline(t *testing.T) {
	p := sparse(t, 1<<30, "x")
	f, skipped, err := OpenTail(p, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if skipped != 1<<30 {
		t.Errorf("skipped %d, want the whole file", skipped)
	}
}

func TestReadLine(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 100) + "\nnext\nlast"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	var got []string
	for {
		line, long, err := ReadLine(br, 10)
		switch {
		case long:
			got = append(got, "<long>")
		case len(line) > 0:
			got = append(got, string(line))
		}
		if err != nil {
			break
		}
	}
	want := []string{"short\n", "<long>", "next\n", "last"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

func TestOpenIn(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "s.jsonl"), []byte("host secret\n"), 0o600)
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, "real"), 0o700)
	os.WriteFile(filepath.Join(home, "real", "s.jsonl"), []byte("ok\n"), 0o600)
	os.Symlink(outside, filepath.Join(home, "out")) // a directory link out of home
	os.Symlink("real", filepath.Join(home, "in"))   // one within it
	os.MkdirAll(filepath.Join(home, "f"), 0o700)
	syscall.Mkfifo(filepath.Join(home, "f", "s.jsonl"), 0o600)
	tests := []struct {
		rel, want string
	}{
		{"real/s.jsonl", "ok\n"},
		{"in/s.jsonl", "ok\n"},
		{"out/s.jsonl", ""},
		{"f/s.jsonl", ""},
		{"../" + filepath.Base(outside) + "/s.jsonl", ""},
	}
	for _, tt := range tests {
		withDeadline(t, func() {
			f, err := OpenIn(home, tt.rel)
			if tt.want == "" {
				if err == nil {
					f.Close()
					t.Errorf("OpenIn(%s) succeeded", tt.rel)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenIn(%s): %v", tt.rel, err)
			}
			defer f.Close()
			data, _ := io.ReadAll(f)
			if string(data) != tt.want {
				t.Errorf("OpenIn(%s) read %q", tt.rel, data)
			}
		})
	}
}
