package run

import (
	"os"
	"path/filepath"
	"testing"
)

// The quota counts what the run's directories take on the host's disk:
// never what a link points at, a hard-linked file once, a sparse file by
// its blocks.
func TestDiskUsage(t *testing.T) {
	outside := t.TempDir()
	big := filepath.Join(outside, "big")
	if err := os.WriteFile(big, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		prepare  func(dir string)
		min, max int64
	}{
		{"empty", func(string) {}, 0, 64 << 10},
		{"a 1 MiB file", func(d string) { write(t, filepath.Join(d, "f"), string(make([]byte, 1<<20))) }, 1 << 20, 1<<20 + 64<<10},
		{"a link to a big host file", func(d string) { os.Symlink(big, filepath.Join(d, "l")) }, 0, 64 << 10},
		{"a link to a big host directory", func(d string) { os.Symlink(outside, filepath.Join(d, "l")) }, 0, 64 << 10},
		{"one file hard-linked three times", func(d string) {
			write(t, filepath.Join(d, "f"), string(make([]byte, 1<<20)))
			os.Link(filepath.Join(d, "f"), filepath.Join(d, "g"))
			os.Link(filepath.Join(d, "f"), filepath.Join(d, "h"))
		}, 1 << 20, 1<<20 + 64<<10},
		{"a sparse 10 GiB file", func(d string) {
			f, err := os.Create(filepath.Join(d, "sparse"))
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(10 << 30)
			f.Close()
		}, 0, 64 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.prepare(dir)
			u := diskUsage([]string{dir}, 1000)
			if u.Bytes < tt.min || u.Bytes > tt.max {
				t.Errorf("usage = %d bytes, want between %d and %d", u.Bytes, tt.min, tt.max)
			}
		})
	}
}

// Counting stops at the file limit, so millions of files cannot make the
// walk itself the attack.
func TestDiskUsageStopsAtFileLimit(t *testing.T) {
	dir := t.TempDir()
	for i := range 50 {
		write(t, filepath.Join(dir, "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), "x")
	}
	if u := diskUsage([]string{dir}, 20); u.Files != 20 {
		t.Errorf("counted %d files, want to stop at 20", u.Files)
	}
}
