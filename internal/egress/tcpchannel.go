package egress

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The channel over TCP.
//
// Where the agent and its proxy share no Unix socket directory (on
// Kubernetes they are two pods), the relay reaches the proxy over the
// network instead. The proxy's port is then reachable by whatever else
// can route to it, so every connection to it opens with a preamble that
// proves it comes from this run's relay:
//
//	relay -> proxy: one byte kind (channelStream or channelLifeline)
//	                then the 32-byte channel key
//
// The key is random per sandbox and given to both the relay and the proxy
// in ChannelKeyEnv. The proxy reads the preamble under a deadline, compares
// it in constant time and closes a connection whose preamble is anything
// else before it parses a byte of what follows: another pod in the cluster
// (where NetworkPolicy is not enforced) cannot reach the proxy, nor the
// credentials it adds. Nothing is answered either way; a stream then
// carries the agent's bytes as they are (no descriptors travel over TCP),
// and a lifeline carries nothing and ends when the agent has exited, as on
// the Unix socket (see Lifeline).
const (
	// ChannelKeyEnv names the environment variable holding the channel
	// key as 64 hex digits, in the relay and in the proxy.
	ChannelKeyEnv = "AIRLOCK_CHANNEL_KEY"

	channelLifeline byte = lifeMarker // 0x01
	channelStream   byte = 0x02
	channelKeySize       = 32

	// ChannelTimeout bounds how long the proxy waits for a connection's
	// preamble: a peer that says nothing holds a descriptor no longer.
	ChannelTimeout = 10 * time.Second
)

// ChannelKey authenticates the relay's connections to its proxy over TCP.
// It is a secret: never printed, never logged.
type ChannelKey [channelKeySize]byte

// NewChannelKey returns a fresh random key, one per sandbox.
func NewChannelKey() (ChannelKey, error) {
	var k ChannelKey
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("channel key: %w", err)
	}
	return k, nil
}

// Hex is the key as ChannelKeyEnv carries it.
func (k ChannelKey) Hex() string { return hex.EncodeToString(k[:]) }

// ParseChannelKey reads a key as ChannelKeyEnv carries it. The error says
// what is wrong with the value without repeating it.
func ParseChannelKey(s string) (ChannelKey, error) {
	var k ChannelKey
	if len(s) != 2*channelKeySize {
		return k, fmt.Errorf("%s: want %d hex digits, got %d characters", ChannelKeyEnv, 2*channelKeySize, len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("%s: want %d hex digits: the value holds something else", ChannelKeyEnv, 2*channelKeySize)
	}
	return k, nil
}

// TakeChannelKey reads the key from ChannelKeyEnv and removes it from the
// environment, so that the commands this process starts do not inherit it.
func TakeChannelKey() (ChannelKey, error) {
	s, ok := os.LookupEnv(ChannelKeyEnv)
	if !ok || s == "" {
		return ChannelKey{}, fmt.Errorf("%s is not set: a channel over TCP needs the run's channel key", ChannelKeyEnv)
	}
	os.Unsetenv(ChannelKeyEnv)
	return ParseChannelKey(s)
}

// ChannelListener accepts on ln (the proxy's TCP port) and returns only
// the streams whose preamble carries key; it closes every other
// connection unanswered, and reports each refusal through logf (once per
// peer address; nil logs nothing). The preamble is read off the accept
// loop, so a peer that stalls delays only itself. A lifeline is not
// returned: Server.Serve ends when one ends, as on a Unix socket.
func ChannelListener(ln net.Listener, key ChannelKey, logf func(format string, args ...any)) net.Listener {
	return newChannelListener(ln, key, logf, ChannelTimeout)
}

func newChannelListener(ln net.Listener, key ChannelKey, logf func(string, ...any), timeout time.Duration) *channelListener {
	l := &channelListener{
		ln: ln, key: key, logf: logf, timeout: timeout,
		conns:  make(chan net.Conn),
		done:   make(chan struct{}),
		ended:  make(chan struct{}),
		lives:  map[net.Conn]struct{}{},
		logged: map[string]bool{},
	}
	go l.loop()
	return l
}

// channelRefusalsLogged caps the peers remembered for logging: a flood of
// addresses must not grow the proxy's memory.
const channelRefusalsLogged = 256

type channelListener struct {
	ln      net.Listener
	key     ChannelKey
	logf    func(string, ...any)
	timeout time.Duration
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	err     error         // set before done is closed
	ended   chan struct{} // closed when a lifeline ends
	endOnce sync.Once

	mu     sync.Mutex
	lives  map[net.Conn]struct{} // open lifelines, closed with the listener
	logged map[string]bool
}

func (l *channelListener) loop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.once.Do(func() { l.err = err; close(l.done) })
			return
		}
		go l.admit(c)
	}
}

// admit reads c's preamble and passes a stream on, holds a lifeline until
// it ends, or closes c.
func (l *channelListener) admit(c net.Conn) {
	var p [1 + channelKeySize]byte
	_ = c.SetReadDeadline(time.Now().Add(l.timeout))
	_, err := io.ReadFull(c, p[:])
	keyOK := subtle.ConstantTimeCompare(p[1:], l.key[:]) == 1
	kind := p[0]
	switch {
	case err != nil:
		l.refuse(c, "no channel preamble")
		return
	case !keyOK:
		l.refuse(c, "wrong channel key")
		return
	case kind != channelStream && kind != channelLifeline:
		l.refuse(c, "unknown channel kind")
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if kind == channelLifeline {
		l.holdLifeline(c)
		return
	}
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *channelListener) refuse(c net.Conn, why string) {
	defer c.Close()
	if l.logf == nil {
		return
	}
	peer := "an unknown peer"
	if a := c.RemoteAddr(); a != nil {
		peer = a.String()
		if host, _, err := net.SplitHostPort(peer); err == nil {
			peer = host
		}
	}
	l.mu.Lock()
	seen := l.logged[peer]
	if !seen && len(l.logged) < channelRefusalsLogged {
		l.logged[peer] = true
	}
	l.mu.Unlock()
	if !seen {
		l.logf("refused a connection to %s from %s: %s (further refusals of this peer are not logged)", l.ln.Addr(), peer, why)
	}
}

// holdLifeline waits until the relay closes the lifeline (or sends
// anything: a lifeline carries nothing), then ends the proxy.
func (l *channelListener) holdLifeline(c net.Conn) {
	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		c.Close()
		return
	default:
	}
	l.lives[c] = struct{}{}
	l.mu.Unlock()
	var b [1]byte
	c.Read(b[:])
	c.Close()
	l.mu.Lock()
	delete(l.lives, c)
	l.mu.Unlock()
	l.endOnce.Do(func() { close(l.ended) })
}

// lifelineEnded is closed once a lifeline on l has ended.
func (l *channelListener) lifelineEnded() <-chan struct{} { return l.ended }

func (l *channelListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// Close stops accepting and lets go of the open lifelines.
func (l *channelListener) Close() error {
	err := l.ln.Close()
	l.mu.Lock()
	l.once.Do(func() { l.err = net.ErrClosed; close(l.done) })
	for c := range l.lives {
		c.Close()
	}
	l.mu.Unlock()
	return err
}

func (l *channelListener) Addr() net.Addr { return l.ln.Addr() }

// RelayChannel is Relay over TCP: it accepts connections on ln (the
// sandbox's loopback port) and carries each, both ways with half-close, to
// the proxy's channel at addr (HOST:PORT), opened as a stream with key.
// While the proxy does not answer yet the client's connection waits
// (ProxyStartWait at most); when it cannot be reached the connection is
// closed: traffic fails closed, never around the proxy. It returns when
// ctx ends, closing ln and every open connection.
func RelayChannel(ctx context.Context, ln net.Listener, addr string, key ChannelKey) {
	var answered atomic.Bool
	ForwardPort(ctx, ln, func() (net.Conn, error) {
		return dialChannel(ctx, addr, key, channelStream, &answered)
	})
}

// ChannelLifeline opens the relay's lifeline on the proxy's channel at
// addr, waiting for the proxy as the relay's connections do. Closing it
// tells the proxy the agent is gone.
func ChannelLifeline(ctx context.Context, addr string, key ChannelKey) (io.Closer, error) {
	var answered atomic.Bool
	return dialChannel(ctx, addr, key, channelLifeline, &answered)
}

// dialChannel connects to the proxy's channel at addr and sends the
// preamble. Until the proxy has answered once (answered) any failure
// means it is starting (its pod not yet listening, or not yet routable):
// the caller waits, ProxyStartWait at most. Afterwards a refusal is given
// a moment, as dialUnixWaiting gives one, then counts: the proxy is gone.
func dialChannel(ctx context.Context, addr string, key ChannelKey, kind byte, answered *atomic.Bool) (net.Conn, error) {
	start := time.Now()
	for {
		d := net.Dialer{Timeout: passTimeout}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			answered.Store(true)
			if err := sendPreamble(c, key, kind); err != nil {
				return nil, err
			}
			return c, nil
		}
		var wait time.Duration
		switch {
		case !answered.Load():
			wait = ProxyStartWait
		case errors.Is(err, syscall.ECONNREFUSED):
			wait = 100 * time.Millisecond
		}
		if ctx.Err() != nil || time.Since(start) >= wait {
			return nil, fmt.Errorf("relay: proxy channel %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func sendPreamble(c net.Conn, key ChannelKey, kind byte) error {
	var p [1 + channelKeySize]byte
	p[0] = kind
	copy(p[1:], key[:])
	_ = c.SetWriteDeadline(time.Now().Add(passTimeout))
	_, err := c.Write(p[:])
	_ = c.SetWriteDeadline(time.Time{})
	if err != nil {
		c.Close()
		return fmt.Errorf("relay: proxy channel: %w", err)
	}
	return nil
}
