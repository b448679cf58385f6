package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func testKey(t *testing.T) ChannelKey {
	t.Helper()
	k, err := NewChannelKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// refusals collects what a ChannelListener logs.
type refusals struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *refusals) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(&r.buf, format+"\n", args...)
}

func (r *refusals) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}

// echoChannel serves a channel listener whose streams are answered with
// "got N: DATA" once the client has finished sending (half-close), and
// returns its address.
func echoChannel(t *testing.T, key ChannelKey, timeout time.Duration, log *refusals) (string, *channelListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := newChannelListener(ln, key, log.logf, timeout)
	t.Cleanup(func() { cl.Close() })
	go func() {
		for {
			c, err := cl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "got %d: %s", len(b), b)
			}()
		}
	}()
	return ln.Addr().String(), cl
}

// closedUnanswered says whether the proxy closed c without a byte.
func closedUnanswered(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if n != 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read = %d bytes, %v; want the connection closed unanswered", n, err)
	}
}

func preamble(kind byte, key ChannelKey) []byte {
	return append([]byte{kind}, key[:]...)
}

// Only a stream opened with this run's key gets through; everything else
// a peer on the network can send is closed before anything is parsed, and
// a peer that sends too little is closed once the deadline passes.
func TestChannelListenerAdmitsOnlyTheKey(t *testing.T) {
	key := testKey(t)
	other := testKey(t)
	flipped := key
	flipped[31] ^= 1
	const timeout = 300 * time.Millisecond
	cases := []struct {
		name  string
		send  []byte
		admit bool
		why   string
	}{
		{"the key", append(preamble(channelStream, key), "hello"...), true, ""},
		{"another key", append(preamble(channelStream, other), "hello"...), false, "wrong channel key"},
		{"last bit flipped", append(preamble(channelStream, flipped), "hello"...), false, "wrong channel key"},
		{"plain HTTP", []byte("GET /healthz HTTP/1.1\r\nHost: proxy\r\n\r\n"), false, "wrong channel key"},
		{"unknown kind", append(preamble(0x00, key), "hello"...), false, "unknown channel kind"},
		{"nothing", nil, false, "no channel preamble"},
		{"short preamble", preamble(channelStream, key)[:20], false, "no channel preamble"},
		{"kind only", []byte{channelStream}, false, "no channel preamble"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var log refusals
			addr, _ := echoChannel(t, key, timeout, &log)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if !tc.admit {
				// The peer keeps its side open: only the deadline (or
				// the wrong bytes) may end the connection.
				closedUnanswered(t, c, 5*time.Second)
				got := log.String()
				if !strings.Contains(got, tc.why) || !strings.Contains(got, "127.0.0.1") {
					t.Errorf("log = %q, want the refusal (%s) and the peer", got, tc.why)
				}
				if strings.Contains(got, key.Hex()) || strings.Contains(got, other.Hex()) {
					t.Error("the log repeats a key")
				}
				return
			}
			c.(*net.TCPConn).CloseWrite()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "got 5: hello" {
				t.Errorf("answer = %q, %v; want %q", b, err, "got 5: hello")
			}
			if log.String() != "" {
				t.Errorf("logged %q for the relay's own stream", log.String())
			}
		})
	}
}

// A peer refused again and again is logged once.
func TestChannelListenerLogsAPeerOnce(t *testing.T) {
	var log refusals
	addr, _ := echoChannel(t, testKey(t), time.Second, &log)
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(preamble(channelStream, testKey(t)))
		closedUnanswered(t, c, 5*time.Second)
		c.Close()
	}
	if n := strings.Count(log.String(), "refused"); n != 1 {
		t.Errorf("logged %d refusals of one peer, want 1:\n%s", n, log.String())
	}
}

// The relay's side over TCP: a client on the sandbox's loopback port
// reaches the proxy's channel, both ways, and the proxy sees the client's
// half-close as the end of its request.
func TestRelayChannelCarriesBothWays(t *testing.T) {
	key := testKey(t)
	var log refusals
	addr, _ := echoChannel(t, key, time.Second, &log)
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan struct{})
	go func() { RelayChannel(ctx, rl, addr, key); close(relayDone) }()
	for _, msg := range []string{"one", strings.Repeat("x", 1<<20)} {
		c, err := net.Dial("tcp", rl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			io.WriteString(c, msg)
			c.(*net.TCPConn).CloseWrite()
		}()
		b, err := io.ReadAll(c)
		c.Close()
		if want := fmt.Sprintf("got %d: %s", len(msg), msg); err != nil || string(b) != want {
			t.Errorf("through the relay: %d bytes, %v; want %d bytes", len(b), err, len(want))
		}
	}
	if log.String() != "" {
		t.Errorf("the proxy refused the relay: %s", log.String())
	}
	cancel()
	select {
	case <-relayDone:
	case <-time.After(10 * time.Second):
		t.Fatal("RelayChannel still runs after its context ended")
	}
	if _, err := net.Dial("tcp", rl.Addr().String()); err == nil {
		t.Error("the relay still listens after its context ended")
	}
}

// A relay with the wrong key gets nowhere: its client's connection is
// closed unanswered.
func TestRelayChannelWithTheWrongKeyIsRefused(t *testing.T) {
	var log refusals
	addr, _ := echoChannel(t, testKey(t), time.Second, &log)
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go RelayChannel(ctx, rl, addr, testKey(t))
	c, err := net.Dial("tcp", rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "hello")
	closedUnanswered(t, c, 5*time.Second)
	if !strings.Contains(log.String(), "wrong channel key") {
		t.Errorf("log = %q", log.String())
	}
}

// The agent's pod starts while its proxy's comes up: a connection made
// before the proxy listens waits for it, then goes through.
func TestRelayChannelWaitsForTheProxy(t *testing.T) {
	key := testKey(t)
	// A free port, released: nothing listens on it until the proxy does.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go RelayChannel(ctx, rl, addr, key)
	c, err := net.Dial("tcp", rl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "early")
	c.(*net.TCPConn).CloseWrite()
	time.Sleep(300 * time.Millisecond) // the relay is now retrying
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the released port was taken meanwhile: %v", err)
	}
	var log refusals
	cl := newChannelListener(ln, key, log.logf, time.Second)
	defer cl.Close()
	go func() {
		s, err := cl.Accept()
		if err != nil {
			return
		}
		defer s.Close()
		b, _ := io.ReadAll(s)
		fmt.Fprintf(s, "got %d: %s", len(b), b)
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "got 5: early" {
		t.Errorf("answer = %q, %v", b, err)
	}
}

// The proxy serves while the relay's lifeline over TCP is open, and ends
// once the relay closes it. A lifeline with the wrong key, opened and
// closed by a foreign peer, ends nothing.
func TestChannelLifelineEndsTheProxy(t *testing.T) {
	key := testKey(t)
	srv, err := NewServer(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var log refusals
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(context.Background(), nil, newChannelListener(ln, key, log.logf, time.Second))
	}()

	ctx := context.Background()
	life, err := ChannelLifeline(ctx, addr, key)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := ChannelLifeline(ctx, addr, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	foreign.Close()
	c, err := dialChannel(ctx, addr, key, channelStream, new(atomic.Bool))
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
	case <-time.After(300 * time.Millisecond):
	}
	if !strings.Contains(log.String(), "wrong channel key") {
		t.Errorf("the foreign lifeline was not refused: log = %q", log.String())
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

func TestParseChannelKey(t *testing.T) {
	good := strings.Repeat("0f", 32)
	if k, err := ParseChannelKey(good); err != nil || k.Hex() != good {
		t.Errorf("ParseChannelKey(good) = %x, %v", k, err)
	}
	bad := []string{"", "0f", strings.Repeat("0f", 31), strings.Repeat("0f", 33), strings.Repeat("zz", 32), strings.Repeat("0f", 31) + "0 "}
	for _, s := range bad {
		_, err := ParseChannelKey(s)
		if err == nil {
			t.Errorf("ParseChannelKey(%q) accepted", s)
			continue
		}
		if !strings.Contains(err.Error(), ChannelKeyEnv) || s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("ParseChannelKey(%q) = %v: want the variable named and the value not repeated", s, err)
		}
	}
}
