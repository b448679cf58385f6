package egress

import (
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

// Handing connections over instead of relaying them.
//
// The relay in the sandbox accepts the agent's TCP connection on loopback
// and, rather than copying its bytes to the proxy's Unix socket and back
// (a second hop: two more copies of every byte and two more wake-ups per
// chunk), sends the connection itself over the socket (SCM_RIGHTS). The
// proxy then reads and writes the agent's socket directly, and between two
// TCP sockets io.Copy moves tunnel and body bytes with splice(2), in the
// kernel. The socket stays in the sandbox's network namespace: it only
// reaches the sandbox's loopback, so handing it over gives the proxy
// nothing new and the sandbox no way out.
//
// The exchange on a fresh connection to the proxy's socket:
//
//	relay -> proxy: one byte passMarker, with exactly one descriptor
//	proxy -> relay: passTaken  (the proxy now owns the connection; the relay
//	                            closes its copies and is done)
//	                passRefused (no descriptor arrived, e.g. the runtime
//	                            drops them: the relay copies bytes as before,
//	                            on the same socket)
//
// Anything else the proxy does not accept (a descriptor that is not a
// connected TCP socket, several descriptors) closes the connection. A
// connection whose first byte is not passMarker is an ordinary stream (an
// HTTP request never starts with NUL), served as it is.
const (
	passMarker = 0x00
	// lifeMarker opens the relay's lifeline (see Lifeline).
	lifeMarker  = 0x01
	passTaken   = 'y'
	passRefused = 'n'
	// passTimeout bounds the exchange on both sides: a peer that says
	// nothing must not hold a goroutine and a descriptor forever.
	passTimeout = 10 * time.Second
)

// PassListener accepts on ln (the proxy's Unix socket) and returns, for
// each connection, the agent's own TCP connection when the relay handed it
// over, or else the Unix connection itself. The exchange runs off the
// accept loop, so a peer that stalls delays only itself. A lifeline (see
// Lifeline) is not returned: when one ends, ended is called.
func PassListener(ln *net.UnixListener, ended func()) net.Listener {
	pl := &passListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{}), ended: ended}
	go pl.loop()
	return pl
}

type passListener struct {
	ln    *net.UnixListener
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   error // set before done is closed
	ended func()
}

func (l *passListener) loop() {
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			l.once.Do(func() { l.err = err; close(l.done) })
			return
		}
		go func() {
			conn := receiveConn(c)
			if lc, ok := conn.(lifeline); ok {
				lc.wait()
				if l.ended != nil {
					l.ended()
				}
				return
			}
			if conn == nil {
				return
			}
			select {
			case l.conns <- conn:
			case <-l.done:
				conn.Close()
			}
		}()
	}
}

func (l *passListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *passListener) Close() error {
	err := l.ln.Close()
	l.once.Do(func() { l.err = net.ErrClosed; close(l.done) })
	return err
}

func (l *passListener) Addr() net.Addr { return l.ln.Addr() }

// receiveConn runs the proxy's side of the exchange on c. It returns the
// connection to serve, or nil (c closed) when the peer misbehaved.
func receiveConn(c *net.UnixConn) net.Conn {
	_ = c.SetDeadline(time.Now().Add(passTimeout))
	b := make([]byte, 1)
	// Room for one descriptor: the kernel discards any more and says so
	// with MSG_CTRUNC.
	oob := make([]byte, syscall.CmsgSpace(4))
	n, oobn, flags, _, err := c.ReadMsgUnix(b, oob)
	fds := unixRights(oob[:oobn])
	ok := err == nil && n == 1 && flags&syscall.MSG_CTRUNC == 0
	handed := ok && b[0] == passMarker && len(fds) == 1
	if !handed {
		// Closed before the connection is, so the peer never sees the
		// proxy holding one of its descriptors.
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
	switch {
	case !ok, b[0] != passMarker && len(fds) > 0, len(fds) > 1:
		c.Close()
		return nil
	case b[0] == lifeMarker:
		_ = c.SetDeadline(time.Time{})
		return lifeline{c}
	case b[0] != passMarker:
		_ = c.SetDeadline(time.Time{})
		return &prefixConn{UnixConn: c, first: b[0]}
	case len(fds) == 0:
		if _, err := c.Write([]byte{passRefused}); err != nil {
			c.Close()
			return nil
		}
		_ = c.SetDeadline(time.Time{})
		return c
	}
	tc, err := tcpFromFD(fds[0])
	if err != nil {
		c.Close()
		return nil
	}
	_, err = c.Write([]byte{passTaken})
	c.Close()
	if err != nil {
		tc.Close()
		return nil
	}
	return tc
}

// unixRights returns every descriptor in a control message, so that all of
// them, wanted or not, can be closed.
func unixRights(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for _, m := range msgs {
		if got, err := syscall.ParseUnixRights(&m); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

// tcpFromFD takes ownership of fd and returns it as a connected TCP
// connection, or an error (fd closed) when it is anything else: a file, a
// pipe, a listening or unconnected socket, UDP, a Unix socket.
func tcpFromFD(fd int) (*net.TCPConn, error) {
	f := os.NewFile(uintptr(fd), "passed")
	defer f.Close() // FileConn holds its own duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("passed descriptor: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, errors.New("passed descriptor is not a TCP connection")
	}
	if tc.RemoteAddr() == nil {
		tc.Close()
		return nil, errors.New("passed TCP socket is not connected")
	}
	return tc, nil
}

// prefixConn is an ordinary stream on the proxy's socket whose first byte
// the exchange has already read.
type prefixConn struct {
	*net.UnixConn
	mu    sync.Mutex
	first byte
	done  bool
}

func (c *prefixConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if !c.done && len(p) > 0 {
		c.done = true
		p[0] = c.first
		c.mu.Unlock()
		return 1, nil
	}
	c.mu.Unlock()
	return c.UnixConn.Read(p)
}

// handOver runs the relay's side of the exchange: it offers client to the
// proxy over up. It reports whether the proxy took it (the caller then
// closes both and is done); false with a nil error means up is now an
// ordinary stream to relay client's bytes over.
func handOver(client *net.TCPConn, up *net.UnixConn) (bool, error) {
	raw, err := client.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("relay: descriptor of the client: %w", err)
	}
	_ = up.SetDeadline(time.Now().Add(passTimeout))
	defer up.SetDeadline(time.Time{})
	var sendErr error
	err = raw.Control(func(fd uintptr) {
		_, _, sendErr = up.WriteMsgUnix([]byte{passMarker}, syscall.UnixRights(int(fd)), nil)
	})
	if err == nil {
		err = sendErr
	}
	if err != nil {
		return false, &handOverError{err}
	}
	b := make([]byte, 1)
	if _, err := up.Read(b); err != nil {
		return false, fmt.Errorf("relay: hand over: %w", err)
	}
	switch b[0] {
	case passTaken:
		return true, nil
	case passRefused:
		return false, nil
	}
	return false, fmt.Errorf("relay: hand over: unexpected answer %q", b[0])
}

// handOverError is a descriptor that could not even be sent (a runtime
// whose Unix sockets carry no descriptors): the relay may start over on a
// new connection and copy bytes instead.
type handOverError struct{ err error }

func (e *handOverError) Error() string { return "relay: hand over: " + e.err.Error() }
func (e *handOverError) Unwrap() error { return e.err }

// The relay's lifeline.
//
// The relay opens one connection to the proxy's socket that carries
// nothing: its first byte is lifeMarker, and it stays open until the
// agent's processes are all gone. Its end tells the proxy that no more
// traffic can come, so the proxy shuts down (flushing its meter and audit
// log) while the agent's container is still exiting, instead of waiting
// for the host to stop it afterwards; the host's stop then finds it done.
// Anyone on the socket can open a lifeline and end it, the agent too; all
// it can do with one is end its own run's traffic early, which it could do
// by exiting.
type lifeline struct{ c *net.UnixConn }

func (l lifeline) Read([]byte) (int, error)         { return 0, io.EOF }
func (l lifeline) Write([]byte) (int, error)        { return 0, io.ErrClosedPipe }
func (l lifeline) Close() error                     { return l.c.Close() }
func (l lifeline) LocalAddr() net.Addr              { return l.c.LocalAddr() }
func (l lifeline) RemoteAddr() net.Addr             { return l.c.RemoteAddr() }
func (l lifeline) SetDeadline(time.Time) error      { return nil }
func (l lifeline) SetReadDeadline(time.Time) error  { return nil }
func (l lifeline) SetWriteDeadline(time.Time) error { return nil }

// wait returns when the other end closes the lifeline (or sends anything:
// a lifeline carries nothing), and closes it.
func (l lifeline) wait() {
	defer l.c.Close()
	var b [1]byte
	l.c.Read(b[:])
}

// Lifeline opens the relay's lifeline on the proxy's socket at path,
// waiting for the socket as the relay's connections do (ProxyStartWait at
// most). Closing it tells the proxy the agent is gone.
func Lifeline(path string) (io.Closer, error) {
	var answered atomic.Bool
	c, err := dialUnixWaiting(&net.UnixAddr{Name: path, Net: "unix"}, &answered)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{lifeMarker}); err != nil {
		c.Close()
		return nil, fmt.Errorf("relay: lifeline: %w", err)
	}
	return c, nil
}
