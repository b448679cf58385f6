package sandbox

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A stopped sandbox's mounts are read on the host: what the agent left
// there must not lead the reader out of the mount, nor block it.
func TestTarHostHostileTree(t *testing.T) {
	src := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o600)
	ws := filepath.Join(src, "ws")
	os.MkdirAll(filepath.Join(ws, "sub"), 0o755)
	os.WriteFile(filepath.Join(ws, "sub", "file"), []byte("agent data"), 0o644)
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(ws, "abs-link"))
	os.Symlink("../../../../../../"+outside, filepath.Join(ws, "rel-link"))
	if err := unix.Mkfifo(filepath.Join(ws, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- tarHost(&buf, src, "ws", "ws") }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tarHost: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tarHost blocked (on the FIFO?)")
	}
	got := map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if bytes.Contains(data, []byte("host secret")) {
			t.Errorf("%s carries the host's file", h.Name)
		}
		got[h.Name] = h
	}
	for name, typ := range map[string]byte{"ws/": tar.TypeDir, "ws/sub/file": tar.TypeReg, "ws/abs-link": tar.TypeSymlink, "ws/rel-link": tar.TypeSymlink, "ws/fifo": tar.TypeFifo} {
		if h := got[name]; h == nil || h.Typeflag != typ {
			t.Errorf("entry %s = %+v, want type %q", name, h, typ)
		}
	}

	// Through a link, the reader stays inside the mount.
	if err := tarHost(io.Discard, src, "ws/rel-link/secret", "x"); err == nil {
		t.Error("tarHost followed a link out of its root")
	}
	if _, err := statHost(src, "ws/rel-link/secret"); err == nil {
		t.Error("statHost followed a link out of its root")
	}
	if _, err := statHost(src, "ws/missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("statHost of a missing path: %v, want ErrNotFound", err)
	}
}
