package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// maxPortForwardError bounds what the API server's error stream of one
// forwarded connection is read for.
const maxPortForwardError = 4 << 10

// DialPort connects to port on the loopback of container id's pod through
// the API server's portforward subresource: one upgraded connection per
// forwarded connection, so a dropped one costs that connection alone, and
// a pod made again under its name (start) is reached as well. The
// connection enters the pod's network namespace from its node: the pod's
// network policies, which cut it off every network, do not apply to it.
func (k *Kubernetes) DialPort(ctx context.Context, id string, port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("kubernetes: forward port %d: not a port number", port)
	}
	name := k.podOf(ctx, id)
	req := k.api.core.Post().Namespace(k.ns).Resource("pods").Name(name).SubResource("portforward")
	rt, upgrader, err := spdy.RoundTripperFor(k.cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: forward port %d of %s: %w", port, id, err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, req.URL())
	type dialed struct {
		conn httpstream.Connection
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		ch <- dialed{c, err}
	}()
	var conn httpstream.Connection
	select {
	case d := <-ch:
		if d.err != nil {
			return nil, k.apiError(fmt.Sprintf("forward port %d of %s", port, id), d.err)
		}
		conn = d.conn
	case <-ctx.Done():
		go func() {
			if d := <-ch; d.conn != nil {
				d.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(port))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(headers)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("kubernetes: forward port %d of %s: %w", port, id, err)
	}
	// Nothing is written on it: the server says there why it could not
	// connect.
	errStream.Close()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("kubernetes: forward port %d of %s: %w", port, id, err)
	}
	fc := &forwardedConn{conn: conn, data: data, pod: name, port: port, errDone: make(chan struct{})}
	go func() {
		defer close(fc.errDone)
		msg, _ := io.ReadAll(io.LimitReader(errStream, maxPortForwardError))
		if len(msg) > 0 {
			fc.fail(fmt.Errorf("kubernetes: forward port %d of %s: %s", port, id, strings.TrimSpace(string(msg))))
		}
	}()
	return fc, nil
}

// forwardedConn is one forwarded connection: its data stream, on a
// connection of its own to the API server. Deadlines are not kept.
type forwardedConn struct {
	conn httpstream.Connection
	data httpstream.Stream
	pod  string
	port int
	// errDone is closed once the server's error stream has ended.
	errDone   chan struct{}
	mu        sync.Mutex
	err       error
	closeOnce sync.Once
}

// errorWait is how long the end of a forwarded connection waits for the
// server to say why it ended, if it does.
const errorWait = time.Second

func (c *forwardedConn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.Close()
}

func (c *forwardedConn) Read(p []byte) (int, error) {
	n, err := c.data.Read(p)
	if err != nil {
		// The data stream may end before the error stream says why.
		select {
		case <-c.errDone:
		case <-time.After(errorWait):
		}
		c.mu.Lock()
		if c.err != nil {
			err = c.err
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *forwardedConn) Write(p []byte) (int, error) { return c.data.Write(p) }

// CloseWrite tells the pod's side nothing more comes.
func (c *forwardedConn) CloseWrite() error { return c.data.Close() }

func (c *forwardedConn) Close() error {
	c.closeOnce.Do(func() {
		c.data.Reset()
		c.conn.Close()
	})
	return nil
}

func (c *forwardedConn) LocalAddr() net.Addr  { return forwardAddr("airlock") }
func (c *forwardedConn) RemoteAddr() net.Addr { return forwardAddr(c.pod + ":" + strconv.Itoa(c.port)) }

func (c *forwardedConn) SetDeadline(time.Time) error      { return nil }
func (c *forwardedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *forwardedConn) SetWriteDeadline(time.Time) error { return nil }

// forwardAddr names an end of a forwarded connection.
type forwardAddr string

func (forwardAddr) Network() string  { return "portforward" }
func (a forwardAddr) String() string { return string(a) }
