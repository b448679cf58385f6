package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Relay accepts TCP connections on ln (the sandbox's loopback ports) and
// carries each to the proxy's Unix socket at socketPath, both ways with
// half-close. When the socket cannot be dialled the client's connection is
// closed at once: traffic fails closed, never around the proxy. Relay
// returns nil when ctx ends, closing ln and every open connection.
func Relay(ctx context.Context, ln net.Listener, socketPath string) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
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
			up, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socketPath, Net: "unix"})
			if err != nil {
				return // fail closed: the client sees its connection end
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
