package egress

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := Record{Kind: KindConnect, Method: http.MethodConnect}
	host, port, err := splitTarget(r.Host, 0)
	rec.Port = port
	if err != nil {
		rec.Host = headerSafe(r.Host)
		s.deny(w, rec, &denial{reason: err.Error()}, start)
		return
	}
	canon, d := s.precheck(r, host, port, &rec)
	if d != nil {
		s.deny(w, rec, d, start)
		return
	}
	// Resolve and check the addresses now, but connect only once the
	// client's ClientHello has shown the SNI matches: a refused tunnel must
	// not even open a connection to the host.
	addrs, err := s.resolve(r.Context(), canon)
	if err == nil {
		s.tunnel(w, canon, port, func() (net.Conn, error) { return s.dial(r.Context(), addrs, port) }, rec, start)
		return
	}
	if errors.As(err, &d) {
		s.deny(w, rec, d, start)
		return
	}
	http.Error(w, "airlock egress proxy: "+err.Error(), http.StatusBadGateway)
	rec.Allowed, rec.Reason = true, "upstream error: "+err.Error()
	rec.DurationMS = time.Since(start).Milliseconds()
	s.log(rec)
}

// tunnel answers 200, checks the TLS ClientHello's SNI against the CONNECT
// host, dials, then relays bytes both ways without looking at them again.
// A host that cannot be reached shows as a tunnel closed right away: the
// 200 has gone out by then.
func (s *Server) tunnel(w http.ResponseWriter, host string, port int, dial func() (net.Conn, error), rec Record, start time.Time) {
	finish := func(allowed bool, reason string) {
		rec.Allowed, rec.Reason = allowed, reason
		rec.DurationMS = time.Since(start).Milliseconds()
		s.log(rec)
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "airlock egress proxy: CONNECT not supported on this connection", http.StatusInternalServerError)
		finish(true, "upstream error: cannot hijack")
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		finish(true, "upstream error: hijack: "+err.Error())
		return
	}
	defer client.Close()
	if !s.track(client) {
		finish(true, "proxy shutting down")
		return
	}
	defer s.untrack(client)
	if s.expired.Err() != nil {
		// The deadline passed between the check and the hijack.
		finish(false, "the run's time is up ("+s.meter.deadlineReason()+")")
		return
	}
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		finish(true, "client went away")
		return
	}

	var hello []byte
	sni, ident := "", ""
	inj := s.injectionsFor(host, rec.Port)
	proto := s.tunnelProto(host, port)
	if len(inj) > 0 {
		proto = "tls" // intercepted: TLS whatever the port
	}
	switch proto {
	case "ssh":
		_ = client.SetReadDeadline(time.Now().Add(helloTimeout))
		var err error
		ident, err = peekSSHIdent(brw.Reader)
		_ = client.SetReadDeadline(time.Time{})
		if err != nil {
			finish(false, err.Error())
			return
		}
	case "tls":
		_ = client.SetReadDeadline(time.Now().Add(helloTimeout))
		var isTLS bool
		var err error
		sni, isTLS, hello, err = peekClientHello(brw.Reader)
		_ = client.SetReadDeadline(time.Time{})
		if err != nil {
			finish(false, "no TLS ClientHello: "+err.Error())
			return
		}
		if reason := checkSNI(host, sni, isTLS); reason != "" {
			finish(false, reason)
			return
		}
	}
	if len(inj) > 0 {
		s.finishIntercept(client, brw.Reader, hello, host, sni, inj, &rec, finish)
		return
	}
	up, err := dial()
	if err != nil {
		var d *denial
		if errors.As(err, &d) {
			finish(false, d.reason)
		} else {
			finish(true, "upstream error: "+err.Error())
		}
		return
	}
	defer up.Close()
	rec.Addr = up.RemoteAddr().String()
	// Hand over what was read ahead, then let the kernel move the rest.
	if n := brw.Reader.Buffered(); n > 0 {
		more, _ := brw.Reader.Peek(n)
		hello = append(hello, more...)
	}
	if _, err := up.Write(hello); err != nil {
		finish(true, "upstream error: "+err.Error())
		return
	}
	bytesUp, bytesDown := pipe(client, up)
	rec.BytesUp, rec.BytesDown = bytesUp+int64(len(hello)), bytesDown
	reason := "tunnel"
	switch {
	case sni != "":
		reason = "tunnel, sni " + sni
	case ident != "":
		reason = "tunnel, ssh " + ident
	}
	if s.expired.Err() != nil {
		reason += "; cut at the deadline: " + s.meter.deadlineReason()
	}
	finish(true, reason)
}

// needsSNI reports whether a tunnel to host must begin with a TLS
// ClientHello naming it. Tunnels to a listed IP literal need not (the
// operator listed that address; server-speaks-first protocols must work),
// nor does anything in open mode.
func (s *Server) needsSNI(host string) bool {
	_, err := netip.ParseAddr(host)
	return err != nil && s.policy.Mode != ModeOpen
}

// checkSNI returns why a tunnel to the named host must be refused, or "".
func checkSNI(host, sni string, isTLS bool) string {
	switch {
	case !isTLS:
		return "not TLS: tunnels to a host name must start with a TLS ClientHello naming it"
	case sni == "":
		return "TLS ClientHello has no SNI; tunnels to a host name must name it"
	}
	canon, err := Canonical(sni)
	if err != nil {
		return "invalid SNI: " + err.Error()
	}
	if canon != host {
		return "SNI " + canon + " does not match CONNECT host " + host
	}
	return ""
}

// errPeeked stops the TLS handshake once the ClientHello has been parsed.
var errPeeked = errors.New("client hello read")

// peekClientHello reads the client's first TLS handshake message with
// crypto/tls's own parser and returns its SNI and every byte consumed.
// isTLS is false (and nothing consumed) when the first byte is not a TLS
// handshake record.
func peekClientHello(br *bufio.Reader) (sni string, isTLS bool, consumed []byte, err error) {
	first, err := br.Peek(1)
	if err != nil {
		return "", false, nil, err
	}
	if first[0] != 0x16 {
		return "", false, nil, nil
	}
	var buf bytes.Buffer
	got := false
	conn := helloConn{r: io.TeeReader(br, &buf)}
	err = tls.Server(conn, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni, got = h.ServerName, true
			return nil, errPeeked
		},
	}).Handshake()
	if !got {
		return "", true, nil, err
	}
	return sni, true, buf.Bytes(), nil
}

// helloConn is a read-only net.Conn for peekClientHello; the alert the TLS
// server tries to send when we abort goes nowhere.
type helloConn struct{ r io.Reader }

func (c helloConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (helloConn) Write(p []byte) (int, error)      { return 0, io.ErrClosedPipe }
func (helloConn) Close() error                     { return nil }
func (helloConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (helloConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (helloConn) SetDeadline(time.Time) error      { return nil }
func (helloConn) SetReadDeadline(time.Time) error  { return nil }
func (helloConn) SetWriteDeadline(time.Time) error { return nil }

// pipe copies both ways until both directions end, passing each EOF on as
// a half-close so request/response protocols finish cleanly. io.Copy
// between *net.TCPConn and *net.UnixConn uses splice(2).
func pipe(client, upstream net.Conn) (up, down int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		down = copyHalf(client, upstream)
	}()
	up = copyHalf(upstream, client)
	wg.Wait()
	return up, down
}

func copyHalf(dst, src net.Conn) int64 {
	n, err := io.Copy(dst, src)
	if err != nil {
		// A reset or a closed socket: tear down both directions so the
		// other copy does not wait forever.
		dst.Close()
		src.Close()
		return n
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		dst.Close()
	}
	return n
}
