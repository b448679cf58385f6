package archive

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tarOf(t *testing.T, entries ...entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &buf
}

// Everything a hostile container can put in a tar stream stays inside DEST.
func TestExtractHostile(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		wantErr string
	}{
		{"absolute path", []entry{{name: "/etc/evil", typ: tar.TypeReg, body: "x"}}, "absolute"},
		{"dot dot", []entry{{name: "out/../../evil", typ: tar.TypeReg, body: "x"}}, "climbs out"},
		{"symlink to / then write through it", []entry{
			{name: "out/", typ: tar.TypeDir},
			{name: "out/root", typ: tar.TypeSymlink, link: "/"},
			{name: "out/root/tmp/evil", typ: tar.TypeReg, body: "x"},
		}, ""},
		{"hard link to a host file", []entry{{name: "out/passwd", typ: tar.TypeLink, link: "/etc/passwd"}}, ""},
		{"device", []entry{{name: "out/null", typ: tar.TypeChar}}, ""},
		{"fifo", []entry{{name: "out/fifo", typ: tar.TypeFifo}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := t.TempDir()
			dest := filepath.Join(outside, "dest")
			os.Mkdir(dest, 0o755)
			_, err := Extract(tarOf(t, tt.entries...), dest, "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			}
			// Nothing but directories and regular files, and only in dest.
			filepath.Walk(outside, func(p string, info os.FileInfo, err error) error {
				if err != nil {
					t.Fatal(err)
				}
				if !info.Mode().IsRegular() && !info.IsDir() {
					t.Errorf("%s: mode %v", p, info.Mode())
				}
				if rel, _ := filepath.Rel(dest, p); strings.HasPrefix(rel, "..") && p != outside {
					t.Errorf("%s written outside dest", p)
				}
				return nil
			})
			if _, err := os.Stat("/tmp/evil"); err == nil {
				t.Fatal("/tmp/evil was written")
			}
		})
	}
}

// A symbolic link already in DEST does not lead a write outside it.
func TestExtractThroughExistingLink(t *testing.T) {
	outside := t.TempDir()
	dest := filepath.Join(outside, "dest")
	os.Mkdir(dest, 0o755)
	os.Symlink(outside, filepath.Join(dest, "out"))
	_, err := Extract(tarOf(t, entry{name: "out/evil", typ: tar.TypeReg, body: "x"}), dest, "")
	if err == nil {
		t.Fatal("wrote through a link leading out of dest")
	}
	if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
		t.Fatal("evil written outside dest")
	}
}

func TestExtractModesAndRename(t *testing.T) {
	dest := t.TempDir()
	skipped, err := Extract(tarOf(t,
		entry{name: "work/", typ: tar.TypeDir, mode: 0o777},
		entry{name: "work/run.sh", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o4777},
		entry{name: "work/notes.txt", typ: tar.TypeReg, body: "hi", mode: 0o666},
		entry{name: "work/link", typ: tar.TypeSymlink, link: "notes.txt"},
	), dest, "copy")
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || skipped[0].Name != "work/link" {
		t.Fatalf("skipped = %v, want the link", skipped)
	}
	for name, want := range map[string]os.FileMode{"copy/run.sh": 0o755, "copy/notes.txt": 0o644} {
		fi, err := os.Stat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dest, "copy", "notes.txt")); string(data) != "hi" {
		t.Fatalf("notes.txt = %q", data)
	}
}

func TestCreateRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(src, "a", "b", "f.txt"), []byte("data"), 0o600)
	var buf bytes.Buffer
	if err := Create(&buf, src, "data", 1234, 5678); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Uid != 1234 || h.Gid != 5678 || !strings.HasPrefix(h.Name, "data") {
			t.Fatalf("entry %s: %d:%d", h.Name, h.Uid, h.Gid)
		}
	}
	dest := t.TempDir()
	if _, err := Extract(&buf, dest, ""); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dest, "data", "a", "b", "f.txt")); string(data) != "data" {
		t.Fatalf("round trip: %q", data)
	}
}
