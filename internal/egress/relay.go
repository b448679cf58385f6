package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Relay accepts TCP connections on ln (the sandbox's loopback ports) and
// hands each over to the proxy through its Unix socket at socketPath
// (passfd.go), or, where the proxy cannot take it, carries its bytes there,
// both ways with half-close. While the socket is not there yet the
// client's connection waits (the proxy is starting, ProxyStartWait at
// most); when it cannot be dialled the connection is closed: traffic fails
// closed, never around the proxy. Relay
// returns nil when ctx ends, closing ln and every open connection.
func Relay(ctx context.Context, ln net.Listener, socketPath string) error {
	var (
		mu       sync.Mutex
		conns    = map[net.Conn]struct{}{}
		wg       sync.WaitGroup
		answered atomic.Bool // the proxy's socket has answered once
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("relay accept on %s: %w", ln.Addr(), err)
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			return nil
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			up, err := dialProxy(c, socketPath, &answered)
			if up == nil || err != nil {
				return // handed over, or failed closed: either way done here
			}
			mu.Lock()
			conns[up] = struct{}{}
			mu.Unlock()
			pipe(c, up)
			mu.Lock()
			delete(conns, up)
			mu.Unlock()
			up.Close()
		}()
	}
}

// ProxyStartWait bounds how long the relay waits for the proxy's socket to
// appear and answer: the agent's container starts while its proxy comes up.
const ProxyStartWait = 30 * time.Second

// dialUnixWaiting dials the proxy's socket. Until the proxy has answered
// once (answered), a socket not there yet means the proxy is starting: the
// client's connection waits, ProxyStartWait at most, and nothing goes
// anywhere meanwhile. Afterwards a missing socket means the proxy is gone.
// A socket that is there but refuses is given a moment (the proxy makes it
// just before it listens), then counts: a proxy that died leaves its socket
// behind. Either way traffic then fails closed at once, not held.
func dialUnixWaiting(addr *net.UnixAddr, answered *atomic.Bool) (*net.UnixConn, error) {
	start := time.Now()
	var refused time.Time // the first refusal: the moment runs from there
	for {
		up, err := net.DialUnix("unix", nil, addr)
		if err == nil {
			answered.Store(true)
			return up, nil
		}
		var waited, wait time.Duration
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			if refused.IsZero() {
				refused = time.Now()
			}
			waited, wait = time.Since(refused), 100*time.Millisecond
		case errors.Is(err, syscall.ENOENT) && !answered.Load():
			waited, wait = time.Since(start), ProxyStartWait
		}
		if waited >= wait {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialProxy offers c to the proxy. It returns nil when the proxy took c
// or when the proxy cannot be reached (the caller closes c: traffic fails
// closed), and otherwise the stream to copy c's bytes over.
func dialProxy(c net.Conn, socketPath string, answered *atomic.Bool) (*net.UnixConn, error) {
	addr := &net.UnixAddr{Name: socketPath, Net: "unix"}
	up, err := dialUnixWaiting(addr, answered)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return up, nil
	}
	taken, err := handOver(tc, up)
	var sendErr *handOverError
	switch {
	case taken:
		up.Close()
		return nil, nil
	case errors.As(err, &sendErr):
		// Nothing reached the proxy; start over as a plain stream.
		up.Close()
		return net.DialUnix("unix", nil, addr)
	case err != nil:
		up.Close()
		return nil, err
	}
	return up, nil
}
