package sandbox

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"slices"
	"testing"
)

// Podman 4.3 names the entries of a stopped container's mount point "/…";
// they are put under the path's base name, as Docker and a running
// Podman name them. Other streams pass unchanged.
func TestPodmanArchive(t *testing.T) {
	type entry struct {
		name, link string
		flag       byte
	}
	tests := []struct {
		name string
		path string
		in   []entry
		want []entry
	}{
		{"a stopped container's mount point", "/workspace",
			[]entry{{"/", "", tar.TypeDir}, {"/a.txt", "", tar.TypeReg}, {"/hard.txt", "/a.txt", tar.TypeLink}, {"/ln", "/etc/passwd", tar.TypeSymlink}},
			[]entry{{"workspace/", "", tar.TypeDir}, {"workspace/a.txt", "", tar.TypeReg}, {"workspace/hard.txt", "workspace/a.txt", tar.TypeLink}, {"workspace/ln", "/etc/passwd", tar.TypeSymlink}}},
		{"the same with a trailing slash", "/workspace/",
			[]entry{{"/", "", tar.TypeDir}, {"/sub", "", tar.TypeDir}},
			[]entry{{"workspace/", "", tar.TypeDir}, {"workspace/sub", "", tar.TypeDir}}},
		{"a running container's", "/workspace",
			[]entry{{"workspace", "", tar.TypeDir}, {"workspace/a.txt", "", tar.TypeReg}},
			[]entry{{"workspace", "", tar.TypeDir}, {"workspace/a.txt", "", tar.TypeReg}}},
		{"absolute names in another stream stay for the reader to refuse", "/workspace",
			[]entry{{"workspace", "", tar.TypeDir}, {"/etc/passwd", "", tar.TypeReg}},
			[]entry{{"workspace", "", tar.TypeDir}, {"/etc/passwd", "", tar.TypeReg}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range tt.in {
				data := []byte{}
				if e.flag == tar.TypeReg {
					data = []byte("content")
				}
				if err := tw.WriteHeader(&tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.flag, Mode: 0o644, Size: int64(len(data))}); err != nil {
					t.Fatal(err)
				}
				tw.Write(data)
			}
			tw.Close()
			rc := podmanArchive(io.NopCloser(&buf), tt.path)
			defer rc.Close()
			tr := tar.NewReader(rc)
			var got []entry
			for {
				hdr, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if data, _ := io.ReadAll(tr); hdr.Typeflag == tar.TypeReg && string(data) != "content" {
					t.Errorf("%s: content %q", hdr.Name, data)
				}
				got = append(got, entry{hdr.Name, hdr.Linkname, hdr.Typeflag})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("entries = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFindMode(t *testing.T) {
	tests := []struct {
		kind byte
		perm uint32
		want os.FileMode
	}{
		{'f', 0o644, 0o644},
		{'d', 0o755, os.ModeDir | 0o755},
		{'l', 0o777, os.ModeSymlink | 0o777},
		{'p', 0o600, os.ModeNamedPipe | 0o600},
		{'s', 0o755, os.ModeSocket | 0o755},
		{'c', 0o666, os.ModeDevice | os.ModeCharDevice | 0o666},
		{'f', 0o4755, os.ModeSetuid | 0o755},
		{'d', 0o3775, os.ModeDir | os.ModeSetgid | os.ModeSticky | 0o775},
	}
	for _, tt := range tests {
		if got := findMode(tt.kind, tt.perm); got != tt.want {
			t.Errorf("findMode(%c, %o) = %v, want %v", tt.kind, tt.perm, got, tt.want)
		}
	}
}
