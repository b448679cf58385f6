package egress

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The host connects only to a socket that is itself in the directory: a
// link to another socket (the engine's), a regular file, a FIFO or a path
// with a slash is refused, and nothing is connected.
func TestDialSocketNoFollow(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	serve := func(path, greeting string) {
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(c, greeting)
				c.Close()
			}
		}()
	}
	serve(filepath.Join(dir, "port-1.sock"), "sandbox")
	serve(filepath.Join(other, "engine.sock"), "engine")
	os.Symlink(filepath.Join(other, "engine.sock"), filepath.Join(dir, "port-2.sock"))
	os.WriteFile(filepath.Join(dir, "port-3.sock"), []byte("x"), 0o644)
	os.Symlink(other, filepath.Join(dir, "sub"))
	linkedDir := filepath.Join(t.TempDir(), "linked")
	os.Symlink(dir, linkedDir)

	c, err := DialSocketNoFollow(dir, "port-1.sock")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "sandbox" {
		t.Errorf("read %q, want the socket's own greeting", got)
	}
	for _, tt := range []struct{ dir, name, errHas string }{
		{dir, "port-2.sock", "not a socket"},
		{dir, "port-3.sock", "not a socket"},
		{dir, "missing.sock", "no such file"},
		{dir, "sub/engine.sock", "not a plain file name"},
		{dir, "..", "not a plain file name"},
		{linkedDir, "port-1.sock", "not a directory"},
	} {
		c, err := DialSocketNoFollow(tt.dir, tt.name)
		if err == nil {
			b, _ := io.ReadAll(c)
			c.Close()
			t.Errorf("DialSocketNoFollow(%s, %q) connected (read %q)", tt.dir, tt.name, b)
		} else if !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("DialSocketNoFollow(%s, %q): %v, want %q", tt.dir, tt.name, err, tt.errHas)
		}
	}
}

// ForwardPort carries bytes both ways with half-close, and closes its
// listener and connections when its context ends.
func TestForwardPort(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		ForwardPort(ctx, ln, func() (net.Conn, error) { return net.Dial("tcp", echo.Addr().String()) })
		close(done)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	if got, _ := io.ReadAll(c); string(got) != "ping" {
		t.Errorf("echoed %q", got)
	}
	c.Close()
	open, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if _, err := open.Read(make([]byte, 1)); err == nil {
		t.Error("a connection stayed open after the forward ended")
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("the listener stayed open after the forward ended")
	}
}
