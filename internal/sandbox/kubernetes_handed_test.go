package sandbox

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// putFile is how a running proxy pod is handed its refreshed credentials
// (HandProxyFile): the file appears whole under its name, readable by its
// owner alone, replacing what was there (a link too, not followed); a
// name that is a path, a temporary name or too much data changes nothing.
func TestPutFile(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		data       []byte
		before     func(t *testing.T, dir string)
		want       string // error text; "" for success
		// sent is the size the sender says it sent: 0 for len(data), -1
		// for none (an older airlock's put).
		sent int64
	}{
		{name: "new", file: "credentials.json", data: []byte(`{"bearer":"b1"}`)},
		{name: "replaces a file", file: "credentials.json", data: []byte(`{"bearer":"b2"}`), before: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "credentials.json"), []byte("old"), 0o644)
		}},
		{name: "replaces a link, not its target", file: "credentials.json", data: []byte(`{"bearer":"b3"}`), before: func(t *testing.T, dir string) {
			os.Symlink(filepath.Join(dir, "target"), filepath.Join(dir, "credentials.json"))
		}},
		{name: "not over a directory", file: "credentials.json", data: []byte("x"), want: "write", before: func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "credentials.json"), 0o700)
			os.WriteFile(filepath.Join(dir, "credentials.json", "keep"), nil, 0o600)
		}},
		{name: "a path", file: "../credentials.json", data: []byte("x"), want: "not a file name"},
		{name: "dot-dot", file: "..", data: []byte("x"), want: "not a file name"},
		{name: "a temporary name", file: handedTempPrefix + "x", data: []byte("x"), want: "not a file name"},
		{name: "too large", file: "credentials.json", data: bytes.Repeat([]byte("x"), maxHandedFile+1), want: "over"},
		{name: "no size given", file: "credentials.json", data: []byte(`{"bearer":"b4"}`), sent: -1},
		// The runtime lost part of the stream, or all of it.
		{name: "cut short", file: "credentials.json", data: []byte(`{"bear`), sent: 15, want: "6 bytes came of the 15 sent"},
		{name: "nothing came", file: "credentials.json", sent: 15, want: "0 bytes came of the 15 sent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.before != nil {
				tc.before(t, dir)
			}
			size := tc.sent
			if size == 0 {
				size = int64(len(tc.data))
			}
			err := putFile(dir, tc.file, bytes.NewReader(tc.data), size)
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), handedTempPrefix) {
					t.Errorf("a temporary file %s stayed", e.Name())
				}
			}
			if _, serr := os.Lstat(filepath.Join(dir, "target")); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("putFile wrote through a link")
			}
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("putFile = %v, want %q", err, tc.want)
				}
				if fi, err := os.Lstat(filepath.Join(dir, "credentials.json")); err == nil && fi.Mode().IsRegular() {
					t.Errorf("a refused put left credentials.json")
				}
				return
			}
			if err != nil {
				t.Fatalf("putFile: %v", err)
			}
			fi, err := os.Lstat(filepath.Join(dir, tc.file))
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
				t.Fatalf("the put file: %v, %v; want a regular file of mode 0600", fi, err)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, tc.file)); !bytes.Equal(got, tc.data) {
				t.Errorf("content %q, want %q", got, tc.data)
			}
		})
	}
}

// A sync of the proxy's directory leaves out the handed files (and what is
// below such a name) and any temporary name they are written under; the
// rest passes as it is.
func TestWithoutEntriesLeavesHandedFiles(t *testing.T) {
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	for _, n := range []string{"./", "./meter.json", "./credentials.json", "./credentials.json/x", "./" + handedTempPrefix + "0123", "./audit.jsonl", "./sub/credentials.json"} {
		h := &tar.Header{Name: n, Mode: 0o600, Typeflag: tar.TypeReg, Size: 1}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write([]byte("s"))
		}
	}
	tw.Close()
	tr := tar.NewReader(withoutEntries(&in, []string{"config.json", "credentials.json"}))
	var got []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name)
	}
	if want := []string{"./", "./meter.json", "./audit.jsonl", "./sub/credentials.json"}; !slices.Equal(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
}
