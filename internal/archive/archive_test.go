package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	size             int64 // header size when no body is written (a stream cut short)
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
		if e.size != 0 {
			h.Size = e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	if len(entries) > 0 && entries[len(entries)-1].size == 0 {
		tw.Close()
	}
	return &buf
}

func dir(name string) entry        { return entry{name: name, typ: tar.TypeDir} }
func file(name, body string) entry { return entry{name: name, typ: tar.TypeReg, body: body} }
func exe(name, body string) entry {
	return entry{name: name, typ: tar.TypeReg, body: body, mode: 0o755}
}
func symlink(name, to string) entry  { return entry{name: name, typ: tar.TypeSymlink, link: to} }
func hardlink(name, to string) entry { return entry{name: name, typ: tar.TypeLink, link: to} }

// tree lists what is under dir: "name" for a file (with its content after
// "="), "name/" for a directory, "name -> target" for a link.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		case info.IsDir():
			out[rel+"/"] = ""
		case info.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			out[rel] = string(data)
		default:
			out[rel] = "special " + info.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Everything a hostile container can put in a tar stream stays inside DEST,
// is left out and reported, or fails the copy leaving nothing at all.
func TestExtractHostile(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		opts    Options
		wantErr string
		want    map[string]string // files that must be there, with their content
		absent  []string
		skipped []string // names reported as left out
	}{
		{name: "absolute path", entries: []entry{file("out/ok", "x"), file("/etc/evil", "x")}, wantErr: "absolute"},
		{name: "dot dot", entries: []entry{file("out/ok", "x"), file("out/../../evil", "x")}, wantErr: "climbs out"},
		{
			name: "symlink to / then a file through it",
			entries: []entry{
				dir("out/"), symlink("out/root", "/"), file("out/root/tmp/evil", "x"),
			},
			want:    map[string]string{"out/root/tmp/evil": "x"},
			skipped: []string{"out/root"},
		},
		{
			name: "link inside the copy, then a file through it: the later entry wins",
			entries: []entry{
				dir("out/"), dir("out/sub/"), symlink("out/l", "sub"), file("out/l/f", "x"),
			},
			want:    map[string]string{"out/l/f": "x"},
			absent:  []string{"out/sub/f"},
			skipped: []string{"out/l"},
		},
		{
			name: "links leading out are left out, links inside are kept",
			entries: []entry{
				dir("out/"), dir("out/a/"), file("out/a/f", "data"),
				symlink("out/passwd", "/etc/passwd"),
				symlink("out/up", "../../.."),
				symlink("out/a/up1", ".."),
				symlink("out/a/up2", "../.."),
				symlink("out/a/back", "../a/f"),
				symlink("out/a/through", "up1/../.."),
				symlink("out/rel", "a/f"),
				symlink("out", "."),
				symlink("out/b", "a"),
				symlink("out/b/nested", "f"),
			},
			want:    map[string]string{"out/rel": "-> a/f", "out/a/up1": "-> ..", "out/a/back": "-> ../a/f"},
			absent:  []string{"out/passwd", "out/up", "out/a/up2", "out/a/through", "out/a/nested"},
			skipped: []string{"out/passwd", "out/up", "out/a/up2", "out/a/through", "out/b/nested"},
		},
		{
			name: "hard links",
			entries: []entry{
				file("out/f", "data"),
				hardlink("out/same", "out/f"),
				hardlink("out/f", "out/f"),
				hardlink("out/passwd", "/etc/passwd"),
				hardlink("out/climb", "out/../../etc/passwd"),
				hardlink("out/later", "out/g"),
				dir("out/d/"), hardlink("out/dirlink", "out/d"),
			},
			want:    map[string]string{"out/f": "data", "out/same": "data"},
			absent:  []string{"out/passwd", "out/climb", "out/later", "out/dirlink"},
			skipped: []string{"out/passwd", "out/climb", "out/later", "out/dirlink"},
		},
		{
			name:    "device and fifo",
			entries: []entry{dir("out/"), {name: "out/null", typ: tar.TypeChar}, {name: "out/disk", typ: tar.TypeBlock}, {name: "out/fifo", typ: tar.TypeFifo}},
			absent:  []string{"out/null", "out/disk", "out/fifo"},
			skipped: []string{"out/null", "out/disk", "out/fifo"},
		},
		{
			name:    "one file over the size cap",
			entries: []entry{file("out/small", "abc"), file("out/big", strings.Repeat("x", 101))},
			opts:    Options{MaxBytes: 100},
			wantErr: "too large",
		},
		{
			name:    "files together over the size cap",
			entries: []entry{file("out/a", strings.Repeat("x", 60)), file("out/b", strings.Repeat("x", 60))},
			opts:    Options{MaxBytes: 100},
			wantErr: "too large",
		},
		{
			name:    "a header claiming more than the cap, with no body",
			entries: []entry{file("out/a", "x"), {name: "out/huge", typ: tar.TypeReg, size: 1 << 40}},
			opts:    Options{MaxBytes: 1 << 30},
			wantErr: "too large",
		},
		{
			name:    "exactly the size cap",
			entries: []entry{file("out/a", strings.Repeat("x", 50)), file("out/b", strings.Repeat("y", 50))},
			opts:    Options{MaxBytes: 100},
			want:    map[string]string{"out/a": strings.Repeat("x", 50)},
		},
		{
			name:    "too many entries",
			entries: []entry{dir("out/"), file("out/a", ""), file("out/b", ""), file("out/c", "")},
			opts:    Options{MaxEntries: 3},
			wantErr: "more than 3 entries",
		},
		{
			name:    "a stream cut short",
			entries: []entry{file("out/a", "x"), {name: "out/b", typ: tar.TypeReg, size: 5000}},
			wantErr: "EOF",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outside := t.TempDir()
			dest := filepath.Join(outside, "dest")
			os.Mkdir(dest, 0o755)
			skipped, err := Extract(tarOf(t, tt.entries...), dest, tt.opts)
			got := tree(t, outside)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				// A failed copy leaves nothing, not even its staging.
				if len(got) != 1 {
					t.Fatalf("a failed copy left %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, content := range got {
				rel, _ := filepath.Rel(dest, filepath.Join(outside, name))
				if strings.HasPrefix(rel, "..") && name != "dest/" {
					t.Errorf("%s written outside dest", name)
				}
				if strings.HasPrefix(content, "special") {
					t.Errorf("%s: %s", name, content)
				}
				if strings.Contains(name, ".airlock-cp-") {
					t.Errorf("staging left behind: %s", name)
				}
			}
			for name, content := range tt.want {
				if got["dest/"+name] != content {
					t.Errorf("%s = %q, want %q", name, got["dest/"+name], content)
				}
			}
			for _, name := range tt.absent {
				if _, ok := got["dest/"+name]; ok {
					t.Errorf("%s was written", name)
				}
			}
			names := map[string]bool{}
			for _, s := range skipped {
				names[s.Name] = true
			}
			for _, name := range tt.skipped {
				if !names[name] {
					t.Errorf("%s not reported as left out; skipped = %v", name, skipped)
				}
			}
			if _, err := os.Stat("/tmp/evil"); err == nil {
				t.Fatal("/tmp/evil was written")
			}
		})
	}
}

// ErrTooLarge is what the caller can tell a size problem by.
func TestExtractTooLargeIs(t *testing.T) {
	_, err := Extract(tarOf(t, file("out/big", "0123456789")), t.TempDir(), Options{MaxBytes: 5})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// A symbolic link already in DEST does not lead a write outside it.
func TestExtractThroughExistingLink(t *testing.T) {
	outside := t.TempDir()
	dest := filepath.Join(outside, "dest")
	os.Mkdir(dest, 0o755)
	os.Symlink(outside, filepath.Join(dest, "out"))
	_, err := Extract(tarOf(t, file("out/evil", "x")), dest, Options{})
	if err == nil {
		t.Fatal("wrote through a link leading out of dest")
	}
	if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
		t.Fatal("evil written outside dest")
	}
}

// Into an existing directory the copy is merged; a file replaces the name,
// never the file a hard link there shares.
func TestExtractMerge(t *testing.T) {
	dest := t.TempDir()
	precious := filepath.Join(t.TempDir(), "precious")
	os.WriteFile(precious, []byte("precious"), 0o644)
	os.MkdirAll(filepath.Join(dest, "out", "sub"), 0o755)
	os.WriteFile(filepath.Join(dest, "out", "keep.txt"), []byte("kept"), 0o644)
	if err := os.Link(precious, filepath.Join(dest, "out", "sub", "f")); err != nil {
		t.Skip("no hard links here:", err)
	}
	_, err := Extract(tarOf(t, dir("out/"), dir("out/sub/"), file("out/sub/f", "new"), file("out/new.txt", "n")), dest, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := tree(t, dest)
	want := map[string]string{"out/": "", "out/sub/": "", "out/keep.txt": "kept", "out/new.txt": "n", "out/sub/f": "new"}
	if len(got) != len(want) {
		t.Errorf("tree = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if data, _ := os.ReadFile(precious); string(data) != "precious" {
		t.Fatalf("wrote through a hard link: %q", data)
	}
}

func TestExtractModesAndRename(t *testing.T) {
	dest := t.TempDir()
	skipped, err := Extract(tarOf(t,
		entry{name: "work/", typ: tar.TypeDir, mode: 0o777},
		entry{name: "work/run.sh", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o4777},
		entry{name: "work/notes.txt", typ: tar.TypeReg, body: "hi", mode: 0o666},
		symlink("work/link", "notes.txt"),
		symlink("work/out", "/etc"),
	), dest, Options{Rename: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || skipped[0].Name != "work/out" {
		t.Fatalf("skipped = %v, want the link out", skipped)
	}
	for name, want := range map[string]os.FileMode{"copy": 0o755 | os.ModeDir, "copy/run.sh": 0o755, "copy/notes.txt": 0o644} {
		fi, err := os.Stat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dest, "copy", "link")); string(data) != "hi" {
		t.Fatalf("through the kept link: %q", data)
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
	if _, err := Extract(&buf, dest, Options{}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(dest, "data", "a", "b", "f.txt")); string(data) != "data" {
		t.Fatalf("round trip: %q", data)
	}
}
