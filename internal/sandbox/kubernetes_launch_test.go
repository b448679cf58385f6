package sandbox

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A warm pod's files go in over what its mounts bind: a file mount is bound
// by its inode, so the claim's content must land in that same inode (here
// a hard link stands for the bind mount), and nothing may land outside the
// directory.
func TestUnpackInPlace(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "m0", "data"), 0o755)
	note := filepath.Join(dir, "m1", "note.txt")
	os.MkdirAll(filepath.Dir(note), 0o755)
	os.WriteFile(note, nil, 0o644)
	bound := filepath.Join(t.TempDir(), "bound")
	if err := os.Link(note, bound); err != nil {
		t.Fatal(err)
	}
	stream := func(entries ...*tar.Header) *bytes.Buffer {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range entries {
			tw.WriteHeader(h)
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte(h.Linkname))
			}
		}
		tw.Close()
		return &b
	}
	file := func(name, content string, mode int64) *tar.Header {
		// Linkname carries the content in this test only.
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(content)), Linkname: content}
	}
	in := stream(
		&tar.Header{Name: "m0/data/", Typeflag: tar.TypeDir, Mode: 0o700},
		file("m0/data/a.txt", "a\n", 0o600),
		&tar.Header{Name: "m0/data/link", Typeflag: tar.TypeSymlink, Linkname: "a.txt"},
		file("m1/note.txt", "the note\n", 0o444),
	)
	if err := unpackInPlace(in, dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(bound); string(b) != "the note\n" {
		t.Errorf("the bound file reads %q: the note went into another inode", b)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "m0", "data")); fi.Mode().Perm() != 0o700 {
		t.Errorf("the directory's mode = %v, want the stream's 0700", fi.Mode().Perm())
	}
	if l, _ := os.Readlink(filepath.Join(dir, "m0", "data", "link")); l != "a.txt" {
		t.Errorf("the link = %q", l)
	}
	for _, bad := range []*tar.Header{
		file("../outside", "x", 0o644),
		file("/abs", "x", 0o644),
		{Name: "m0/dev", Typeflag: tar.TypeChar},
	} {
		if err := unpackInPlace(stream(bad), dir); err == nil {
			t.Errorf("unpacking %q (type %c) succeeded", bad.Name, bad.Typeflag)
		}
	}
	// A stream cut short, even at an entry's end, or empty, is refused:
	// the runtime lost part of it.
	whole := stream(file("m1/cut.txt", "cut\n", 0o644)).Bytes()
	for _, cut := range [][]byte{nil, whole[:512], whole[:1024], whole[:len(whole)-512]} {
		if err := unpackInPlace(bytes.NewReader(cut), dir); err == nil {
			t.Errorf("unpacking the first %d bytes of a %d-byte stream: %v, want it refused", len(cut), len(whole), err)
		}
	}
	// A link in place of a directory does not take the files elsewhere.
	out := t.TempDir()
	os.Symlink(out, filepath.Join(dir, "esc"))
	unpackInPlace(stream(file("esc/x", "x", 0o644)), dir)
	if _, err := os.Stat(filepath.Join(out, "x")); err == nil {
		t.Error("a file went through a link out of the directory")
	}
}

func TestWithEnv(t *testing.T) {
	got := withEnv([]string{"PATH=/bin", "HOME=/root", "TERM=x"}, []string{"HOME=/home/agent", "FOO=bar"})
	want := []string{"PATH=/bin", "TERM=x", "HOME=/home/agent", "FOO=bar"}
	if !slices.Equal(got, want) {
		t.Errorf("withEnv = %v, want %v", got, want)
	}
}

// The init waits for the go-ahead, reads the launch once and removes it;
// a stop signal ends the wait; a broken or oversized launch is refused.
func TestAwaitLaunch(t *testing.T) {
	dir := t.TempDir()
	sigs := make(chan os.Signal, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		os.WriteFile(filepath.Join(dir, launchFile), []byte(`{"cmd":["sh","-c","true"],"env":["A=1"],"dir":"/work"}`), 0o600)
		os.WriteFile(filepath.Join(dir, launchGo), nil, 0o600)
	}()
	var stderr bytes.Buffer
	l, code := awaitLaunch(dir, sigs, &stderr)
	if l == nil || code != 0 || !slices.Equal(l.Cmd, []string{"sh", "-c", "true"}) || l.Dir != "/work" || !slices.Equal(l.Env, []string{"A=1"}) {
		t.Fatalf("awaitLaunch = %+v, %d (%s)", l, code, stderr.String())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the launch is still there: %v", ents)
	}

	sigs <- unix.SIGTERM
	if l, code := awaitLaunch(t.TempDir(), sigs, &stderr); l != nil || code != 128+15 {
		t.Errorf("awaitLaunch after SIGTERM = %+v, %d", l, code)
	}

	for name, content := range map[string]string{
		"not JSON":   "{",
		"no command": `{"cmd":[]}`,
		"too large":  `{"cmd":["x"],"dir":"` + strings.Repeat("a", launchMax) + `"}`,
	} {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, launchFile), []byte(content), 0o600)
		os.WriteFile(filepath.Join(d, launchGo), nil, 0o600)
		if l, code := awaitLaunch(d, sigs, &stderr); l != nil || code != 127 {
			t.Errorf("%s: awaitLaunch = %+v, %d", name, l, code)
		}
	}
	// A link in place of the launch is not followed.
	d := t.TempDir()
	secret := filepath.Join(t.TempDir(), "elsewhere")
	os.WriteFile(secret, []byte(`{"cmd":["evil"]}`), 0o600)
	os.Symlink(secret, filepath.Join(d, launchFile))
	os.WriteFile(filepath.Join(d, launchGo), nil, 0o600)
	if l, _ := awaitLaunch(d, sigs, &stderr); l != nil {
		t.Errorf("awaitLaunch followed a link: %+v", l)
	}
}

// The init takes the go-ahead away the moment it sees it (here as fast as
// it can), which must not fail the claim that is still writing it; a file
// written over takes the stream's mode.
func TestUnpackLaunchTakenAtOnce(t *testing.T) {
	dir := t.TempDir()
	var launch bytes.Buffer
	tw := tar.NewWriter(&launch)
	tw.WriteHeader(&tar.Header{Name: launchFile, Typeflag: tar.TypeReg, Mode: 0o600, Size: 2})
	tw.Write([]byte("{}"))
	tw.WriteHeader(&tar.Header{Name: launchGo, Typeflag: tar.TypeReg, Mode: 0o600})
	tw.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				os.Remove(filepath.Join(dir, launchGo))
			}
		}
	}()
	for i := 0; i < 2000; i++ {
		if err := unpackInPlace(bytes.NewReader(launch.Bytes()), dir); err != nil {
			close(stop)
			<-done
			t.Fatalf("unpack %d: %v", i, err)
		}
	}
	close(stop)
	<-done
	os.Chmod(filepath.Join(dir, launchFile), 0o644)
	if err := unpackInPlace(bytes.NewReader(launch.Bytes()), dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, launchFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("the launch written over has mode %v, want the stream's 0600", fi.Mode().Perm())
	}
}

// lastBytes tells a tar stream that reached its end-of-archive marker from
// one cut short, however the stream was read in pieces. (A stream cut
// right after a file that ends in 1 KiB of zeros looks whole: the limit
// of the check.)
func TestLastBytesEndMarker(t *testing.T) {
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	tw.WriteHeader(&tar.Header{Name: "text", Typeflag: tar.TypeReg, Mode: 0o644, Size: 700})
	tw.Write(bytes.Repeat([]byte("x"), 700))
	tw.Close()
	whole := archive.Bytes()
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"whole", whole, true},
		{"empty", nil, false},
		{"one zero block of two", whole[:len(whole)-512], false},
		{"cut at the entry's end", whole[:len(whole)-1024], false},
		{"only zeros, too few", make([]byte, 1000), false},
	} {
		for _, piece := range []int{1, 7, 512, 1500, 1 << 20} {
			var l lastBytes
			for rest := tc.data; len(rest) > 0; {
				n := min(piece, len(rest))
				l.Write(rest[:n])
				rest = rest[n:]
			}
			if got := l.zeroBlocks(); got != tc.want {
				t.Errorf("%s in pieces of %d: zeroBlocks = %v, want %v", tc.name, piece, got, tc.want)
			}
		}
	}
}
