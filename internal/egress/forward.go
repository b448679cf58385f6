package egress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A plain-HTTP request without a body is forwarded here rather than
// through httputil.ReverseProxy, whose body copy reads into a buffer and
// writes it out again: once the response's header is checked and passed
// on, a body of known length goes from the upstream socket to the agent's
// socket with splice(2) (http.ResponseWriter's ReadFrom, then
// net.TCPConn's), and its length is what the copy returns. Nothing in
// those bodies is inspected; model traffic has its own endpoint.

// directable reports whether r is one forwardDirect takes: no request
// body, no protocol upgrade, HTTP/1.
func directable(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ContentLength == 0 && len(r.TransferEncoding) == 0 &&
		r.Header.Get("Upgrade") == "" && r.Header.Get("Expect") == ""
}

// hopHeaders are a connection's own, never forwarded (RFC 9110 7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func dropHopHeaders(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	for k := range h {
		if strings.HasPrefix(k, "Proxy-") {
			delete(h, k)
		}
	}
}

// upConn is an upstream connection and its reader.
type upConn struct {
	net.Conn
	br     *bufio.Reader
	target string
	idle   time.Time
}

// idlePool keeps upstream connections between requests, per target.
type idlePool struct {
	mu     sync.Mutex
	conns  map[string][]*upConn
	closed bool
}

const (
	maxIdlePerTarget = 8
	idleTimeout      = 60 * time.Second
)

func (p *idlePool) get(target string) *upConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for list := p.conns[target]; len(list) > 0; list = p.conns[target] {
		c := list[len(list)-1]
		p.conns[target] = list[:len(list)-1]
		if time.Since(c.idle) < idleTimeout {
			return c
		}
		c.Close()
	}
	return nil
}

func (p *idlePool) put(c *upConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns[c.target]) >= maxIdlePerTarget {
		c.Close()
		return
	}
	if p.conns == nil {
		p.conns = map[string][]*upConn{}
	}
	c.idle = time.Now()
	p.conns[c.target] = append(p.conns[c.target], c)
}

// closeAll empties the pool; with final, it also stays empty.
func (p *idlePool) closeAll(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, list := range p.conns {
		for _, c := range list {
			c.Close()
		}
	}
	p.conns = nil
	p.closed = p.closed || final
}

// errStale is a kept connection the upstream had closed before the request
// reached it: the request is sent again on a new one.
var errStale = errors.New("kept connection closed by the upstream")

// forwardDirect forwards r (directable) to st.target and fills rec; it
// returns the status sent and whether the response was cut midway (the
// caller panics with http.ErrAbortHandler once it has logged).
func (s *Server) forwardDirect(w http.ResponseWriter, r *http.Request, st *forwardState, rec *Record, start time.Time) (status int, aborted bool) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.expired, cancel)
	defer stop()

	out := outRequest(r, st.target)
	var head bytes.Buffer
	if err := out.Write(&head); err != nil {
		return s.directError(w, st, err), false
	}
	var up *upConn
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		var err error
		up, resp, err = s.exchange(ctx, st.target, head.Bytes(), out, attempt == 0)
		if err == nil {
			break
		}
		if !errors.Is(err, errStale) {
			return s.directError(w, st, err), false
		}
	}
	rec.Addr = up.RemoteAddr().String()
	// Cut the upstream when the client goes, or the deadline comes.
	unwatch := context.AfterFunc(ctx, func() { up.Close() })
	reusable := !resp.Close && !r.Close

	h := w.Header()
	for k, vs := range resp.Header {
		h[k] = vs
	}
	dropHopHeaders(h)
	bodyless := r.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified
	if resp.ContentLength >= 0 && !bodyless {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(resp.StatusCode)

	var n int64
	var err error
	switch {
	case bodyless:
	case resp.ContentLength >= 0 && len(resp.TransferEncoding) == 0:
		// What the header read took in first, then the rest from the
		// socket itself, which the kernel moves when w's is one too.
		n, err = io.Copy(w, io.LimitReader(up.br, min(int64(up.br.Buffered()), resp.ContentLength)))
		if err == nil && n < resp.ContentLength {
			var m int64
			m, err = io.Copy(w, &io.LimitedReader{R: up.Conn, N: resp.ContentLength - n})
			n += m
			if err == nil && n < resp.ContentLength {
				err = io.ErrUnexpectedEOF
			}
		}
	default:
		n, err = io.Copy(w, resp.Body)
		reusable = false
	}
	rec.BytesDown = n
	if !unwatch() || err != nil || !reusable || up.br.Buffered() > 0 {
		up.Close()
	} else {
		_ = up.SetDeadline(time.Time{})
		s.idle.put(up)
	}
	if err != nil {
		st.err = err
		return resp.StatusCode, true
	}
	return resp.StatusCode, false
}

// exchange sends head on a kept or new connection to target and reads the
// response's header. A kept connection the upstream has since closed is
// errStale (nothing was answered; the caller tries again on a new one).
func (s *Server) exchange(ctx context.Context, target string, head []byte, out *http.Request, mayReuse bool) (*upConn, *http.Response, error) {
	var up *upConn
	if mayReuse {
		up = s.idle.get(target)
	}
	kept := up != nil
	if !kept {
		host, port, err := splitTarget(target, 0)
		if err != nil {
			return nil, nil, err
		}
		addrs, err := s.resolve(ctx, host)
		if err != nil {
			return nil, nil, err
		}
		c, err := s.dial(ctx, addrs, port)
		if err != nil {
			return nil, nil, err
		}
		up = &upConn{Conn: c, br: bufio.NewReaderSize(c, 16<<10), target: target}
	}
	unwatch := context.AfterFunc(ctx, func() { up.Close() })
	defer unwatch()
	_ = up.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := up.Write(head); err != nil {
		up.Close()
		if kept {
			return nil, nil, errStale
		}
		return nil, nil, err
	}
	for {
		resp, err := http.ReadResponse(up.br, out)
		if err != nil {
			up.Close()
			if kept && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && ctx.Err() == nil {
				return nil, nil, errStale
			}
			return nil, nil, err
		}
		// 1xx (Early Hints and the like) are not passed on; 101 was not
		// asked for.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				up.Close()
				return nil, nil, errors.New("upstream switched protocols unasked")
			}
			continue
		}
		return up, resp, nil
	}
}

// outRequest is what goes upstream: origin-form, Host the checked target
// (as the ReverseProxy path sends it), no hop-by-hop headers, no
// proxy credentials, and no User-Agent added.
func outRequest(r *http.Request, target string) *http.Request {
	h := r.Header.Clone()
	dropHopHeaders(h)
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""}
	}
	u := *r.URL
	u.Scheme, u.Host, u.User = "http", target, nil
	return &http.Request{
		Method:     r.Method,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       target,
	}
}

// directError answers a request that got no response; it returns the
// status sent.
func (s *Server) directError(w http.ResponseWriter, st *forwardState, err error) int {
	var d *denial
	if errors.As(err, &d) {
		st.denied = d
		writeDenied(w, d)
		return http.StatusForbidden
	}
	st.err = err
	http.Error(w, "airlock egress proxy: upstream error: "+err.Error(), http.StatusBadGateway)
	return http.StatusBadGateway
}
