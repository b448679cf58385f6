package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ForwardPort accepts connections on ln and carries each, both ways with
// half-close, to a connection dial makes; one dial cannot make is closed.
// It is both ends of a forwarded port (run -p): on the host, ln is
// 127.0.0.1:HOSTPORT and dial reaches the sandbox's socket
// (DialSocketNoFollow); in the sandbox, the relay's ln is that socket and
// dial reaches the agent's 127.0.0.1:PORT. It returns when ctx ends,
// closing ln and every open connection.
func ForwardPort(ctx context.Context, ln net.Listener, dial func() (net.Conn, error)) {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	track := func(c net.Conn, on bool) bool {
		mu.Lock()
		defer mu.Unlock()
		if on && ctx.Err() != nil {
			return false
		}
		if on {
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
		return true
	}
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
			var ne net.Error
			if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		if !track(c, true) {
			c.Close()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { track(c, false); c.Close() }()
			up, err := dial()
			if err != nil {
				return
			}
			if !track(up, true) {
				up.Close()
				return
			}
			pipe(c, up)
			track(up, false)
			up.Close()
		}()
	}
}

// DialSocketNoFollow connects to the Unix socket name in dir, a directory
// the sandbox writes into: name must be a socket there itself — not a
// link to one elsewhere, not a path — so the sandbox cannot make the host
// connect anywhere but to a socket in that directory. dir itself must be
// the host's (no link at its last element either).
func DialSocketNoFollow(dir, name string) (net.Conn, error) {
	if name == "" || name == "." || name == ".." || len(name) > 255 || containsSlash(name) {
		return nil, fmt.Errorf("socket name %q: not a plain file name", name)
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir + "/" + name, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: dir + "/" + name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("%s/%s is not a socket (mode %#o): not connecting", dir, name, st.Mode&unix.S_IFMT)
	}
	// Connecting through the descriptor reaches exactly the inode just
	// checked: the name cannot be swapped for a link in between.
	return net.Dial("unix", "/proc/self/fd/"+strconv.Itoa(fd))
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' || s[i] == 0 {
			return true
		}
	}
	return false
}
