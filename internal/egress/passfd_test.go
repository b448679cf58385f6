package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// passServer serves on a Unix socket through PassListener and reports,
// per request, which kind of connection carried it.
func passServer(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
			fmt.Fprintf(w, "%s %s", c.Network(), r.URL.Path)
		}),
	}
	go srv.Serve(PassListener(ul, nil))
	t.Cleanup(func() { srv.Close() })
	return sock
}

func get(t *testing.T, c net.Conn, path string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b)
}

// The relay hands the agent's TCP connection over: the proxy then serves
// the agent's own socket (tcp), not the Unix stream (unix).
func TestRelayHandsConnectionsOver(t *testing.T) {
	sock := passServer(t)
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Relay(ctx, rl, sock)
	c, err := net.Dial("tcp", rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []string{"/one", "/two"} {
		if got, want := get(t, c, p), "tcp "+p; got != want {
			t.Errorf("through the relay: %q, want %q", got, want)
		}
	}
	// A plain stream on the socket still works (as under a runtime whose
	// sockets carry no descriptors).
	u, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := get(t, u, "/plain"); got != "unix /plain" {
		t.Errorf("plain stream: %q", got)
	}
	// The marker without a descriptor: refused, then a plain stream.
	u2, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer u2.Close()
	u2.Write([]byte{passMarker})
	ans := make([]byte, 1)
	if _, err := io.ReadFull(u2, ans); err != nil || ans[0] != passRefused {
		t.Fatalf("marker without descriptor: answer %q, %v; want %q", ans, err, passRefused)
	}
	if got := get(t, u2, "/after"); got != "unix /after" {
		t.Errorf("stream after refusal: %q", got)
	}
}

// What a hostile sandbox can send on the proxy's socket instead of its
// own TCP connection: each ends the connection, unanswered, and leaves no
// descriptor behind in the proxy.
func TestPassListenerRefusesHostileDescriptors(t *testing.T) {
	sock := passServer(t)
	pipeFDs := func(t *testing.T) []int {
		var p [2]int
		if err := syscall.Pipe(p[:]); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(p[0]); syscall.Close(p[1]) })
		return p[:]
	}
	sockFD := func(t *testing.T, typ int, listen bool) []int {
		fd, err := syscall.Socket(syscall.AF_INET, typ, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		if listen {
			syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
			syscall.Listen(fd, 1)
		}
		return []int{fd}
	}
	fileFD := func(t *testing.T) []int {
		f, err := os.Open(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return []int{int(f.Fd())}
	}
	cases := []struct {
		name  string
		first byte
		fds   func(t *testing.T) []int
	}{
		{"a pipe", passMarker, func(t *testing.T) []int { return pipeFDs(t)[:1] }},
		{"two descriptors", passMarker, pipeFDs},
		{"a file", passMarker, fileFD},
		{"a UDP socket", passMarker, func(t *testing.T) []int { return sockFD(t, syscall.SOCK_DGRAM, false) }},
		{"an unconnected TCP socket", passMarker, func(t *testing.T) []int { return sockFD(t, syscall.SOCK_STREAM, false) }},
		{"a listening TCP socket", passMarker, func(t *testing.T) []int { return sockFD(t, syscall.SOCK_STREAM, true) }},
		{"a descriptor with a request byte", 'G', func(t *testing.T) []int { return pipeFDs(t)[:1] }},
	}
	before := openFDs(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, _, err := c.WriteMsgUnix([]byte{tc.first}, syscall.UnixRights(tc.fds(t)...), nil); err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || len(b) != 0 {
				t.Errorf("answered %q, %v; want the connection closed unanswered", b, err)
			}
		})
	}
	// The proxy's copies are closed by the time it closes the connection.
	if after := openFDs(t); after > before {
		t.Errorf("%d descriptors open after the attempts, %d before", after, before)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// The proxy serves while the relay's lifeline is open, and ends (Serve
// returns) once the relay closes it: the agent has exited.
func TestLifelineEndsTheProxy(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	srv, err := NewServer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), nil, ul) }()

	life, err := Lifeline(sock)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := get(t, c, "/healthz"); got == "" {
		t.Error("no answer while the lifeline is open")
	}
	select {
	case err := <-done:
		t.Fatalf("the proxy ended while the lifeline was open: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	life.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy still serves after the lifeline ended")
	}
}
