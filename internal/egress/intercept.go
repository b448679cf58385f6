package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// KindHTTPS is the audit record of one request inside an intercepted
// CONNECT tunnel (a host with an injected credential).
const KindHTTPS = "https"

// Injection is one credential the proxy adds to the requests it sees for
// a host: those inside CONNECT tunnels it intercepts for that reason. It
// is never added to plain-HTTP requests, which would carry it in clear
// text.
type Injection struct {
	// Host is the pattern of the hosts it is for, as an allow rule.
	Host string `json:"host"`
	// Header is the header set on every request, replacing whatever the
	// agent sent in it (a placeholder); Value is its whole value
	// ("Bearer <token>", "Basic <base64>").
	Header string `json:"header,omitempty"`
	// Query is the query parameter set instead, to Value.
	Query string `json:"query,omitempty"`
	Value string `json:"value"`
	// Placeholder is what the sandbox holds in its stead: refused when
	// sent to any other host.
	Placeholder string `json:"placeholder,omitempty"`
	// From says where it was configured, for the audit log.
	From string `json:"from,omitempty"`
}

// Where names the header or query parameter the credential goes in.
func (in Injection) Where() string {
	if in.Query != "" {
		return "query parameter " + in.Query
	}
	return "header " + in.Header
}

// injection is an Injection with its pattern parsed.
type injection struct {
	Injection
	rule        Rule
	placeholder *Scanner // finds the placeholder, in any encoding
}

func newInjections(list []Injection) ([]injection, error) {
	out := make([]injection, 0, len(list))
	for _, in := range list {
		r, err := ParseRule(in.Host, in.From)
		if err != nil {
			return nil, err
		}
		if r.isIP() {
			return nil, fmt.Errorf("injection for %s: only host names can be intercepted (the proxy needs the TLS SNI)", in.Host)
		}
		if (in.Header == "") == (in.Query == "") || in.Value == "" ||
			strings.ContainsAny(in.Header+in.Query+in.Value, "\r\n\x00") {
			return nil, fmt.Errorf("injection for %s: needs one header or query parameter and a single-line value", in.Host)
		}
		inj := injection{Injection: in, rule: r}
		if in.Placeholder != "" {
			inj.placeholder = NewScanner([]string{in.Placeholder})
		}
		out = append(out, inj)
	}
	return out, nil
}

// injectionsFor are the injections for a CONNECT to host:port; a host
// that has any is intercepted.
func (s *Server) injectionsFor(host string, port int) []injection {
	var out []injection
	for _, in := range s.inject {
		if in.rule.matchHost(host) && in.rule.matchPort(port, false) {
			out = append(out, in)
		}
	}
	return out
}

// foreignPlaceholder refuses a request that carries the placeholder of a
// credential injected for another host: the agent is trying to use it
// where the proxy will not swap it, which is either a mistake or a probe.
func (s *Server) foreignPlaceholder(host string, port int, r *http.Request) *denial {
	for _, in := range s.inject {
		if in.placeholder == nil || in.rule.matchHost(host) && in.rule.matchPort(port, false) {
			continue
		}
		hit := func(text string) bool { _, ok := in.placeholder.scan(text, true); return ok }
		found := hit(r.RequestURI) || hit(r.Host)
		for k, vs := range r.Header {
			for _, v := range vs {
				found = found || hit(k+": "+v)
			}
		}
		if found {
			return &denial{reason: "placeholder of the credential injected for " + in.Host + " sent to another host",
				rule: "injected-placeholder",
				hint: "The proxy puts the real credential only on requests to " + in.Host + "; it was not sent."}
		}
	}
	return nil
}

// strip removes what the agent sent where the credential goes (the
// placeholder, usually): it is replaced anyway, so it is neither scanned
// (a placeholder in basic authentication looks like a random token) nor
// sent.
func (in injection) strip(r *http.Request) {
	if in.Header != "" {
		r.Header.Del(in.Header)
		return
	}
	var keep []string
	for _, kv := range strings.Split(r.URL.RawQuery, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if name, err := url.QueryUnescape(k); kv == "" || err == nil && name == in.Query {
			continue
		}
		keep = append(keep, kv)
	}
	r.URL.RawQuery = strings.Join(keep, "&")
	r.RequestURI = r.URL.RequestURI()
}

// apply puts the credential on r, once strip has taken the agent's out.
func (in injection) apply(r *http.Request) {
	if in.Header != "" {
		r.Header.Set(in.Header, in.Value)
		return
	}
	q := url.QueryEscape(in.Query) + "=" + url.QueryEscape(in.Value)
	if r.URL.RawQuery != "" {
		q = r.URL.RawQuery + "&" + q
	}
	r.URL.RawQuery = q
	r.RequestURI = r.URL.RequestURI()
}

// intercept terminates the sandbox's TLS inside a CONNECT tunnel to host
// with a certificate from the run's CA, and serves the HTTP/1.1 requests
// in it one by one: each is checked and logged like a plain-HTTP request,
// gets the host's credentials, and goes to the host over TLS the proxy
// verifies. It returns the bytes each way and the number of requests.
func (s *Server) intercept(client net.Conn, br *bufio.Reader, hello []byte, host string, port int, inj []injection) (up, down int64, n int, err error) {
	if n := br.Buffered(); n > 0 {
		more, _ := br.Peek(n)
		hello = append(hello, more...)
	}
	cert, err := s.leaves.Leaf(host)
	if err != nil {
		return 0, 0, 0, err
	}
	conn := &replayConn{Conn: client, r: io.MultiReader(bytes.NewReader(hello), client)}
	tc := tls.Server(conn, &tls.Config{
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	})
	_ = tc.SetDeadline(time.Now().Add(helloTimeout))
	if err := tc.Handshake(); err != nil {
		return conn.up.Load(), conn.down.Load(), 0, fmt.Errorf("TLS handshake with the sandbox (does it trust the run's CA?): %w", err)
	}
	_ = tc.SetDeadline(time.Time{})

	var requests atomic.Int64
	closed := make(chan struct{})
	var once sync.Once
	// A handler may outlive the connection's state: one that hijacked it
	// (a protocol upgrade) copies until its end.
	var handlers sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			requests.Add(1)
			s.serveIntercepted(w, r, host, port, inj)
		}),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // HTTP/1.1 only
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				once.Do(func() { close(closed) })
			}
		},
	}
	_ = srv.Serve(&oneConnListener{conn: tc})
	<-closed
	handlers.Wait()
	return conn.up.Load(), conn.down.Load(), int(requests.Load()), nil
}

// serveIntercepted is one request inside an intercepted tunnel.
func (s *Server) serveIntercepted(w http.ResponseWriter, r *http.Request, host string, port int, inj []injection) {
	start := time.Now()
	rec := Record{Kind: KindHTTPS, Method: r.Method, Host: host, Port: port, Path: headerSafe(r.URL.Path)}
	if s.meter.deadlinePassed() {
		s.expire()
		s.deny(w, rec, &denial{reason: "the run's time is up (" + s.meter.deadlineReason() + ")",
			hint: "The egress proxy refuses all traffic after the run's deadline."}, start)
		return
	}
	// The tunnel was checked for host; a request inside it naming another
	// (domain fronting) is refused rather than sent there with host's
	// credentials.
	if h, _, err := splitTarget(r.Host, port); err != nil || !sameHost(h, host) {
		s.deny(w, rec, &denial{reason: "Host header " + headerSafe(r.Host) + " does not match the tunnel's host " + host,
			hint: "Requests inside a tunnel must be for the host it was opened to."}, start)
		return
	}
	for _, in := range inj {
		in.strip(r)
	}
	if _, d := s.precheck(r, host, port, &rec); d != nil {
		s.deny(w, rec, d, start)
		return
	}
	var where []string
	for _, in := range inj {
		in.apply(r)
		where = append(where, in.Where())
	}
	st := &forwardState{target: net.JoinHostPort(host, strconv.Itoa(port))}
	status, aborted := s.serveCounted(w, r, st, s.interceptProxy, &rec, start)
	s.outcome(&rec, st, status, aborted)
	rec.Reason += "; injected " + strings.Join(where, ", ")
	s.log(rec)
	if aborted {
		panic(http.ErrAbortHandler)
	}
}

func sameHost(a, b string) bool {
	c, err := Canonical(a)
	return err == nil && c == b
}

// newInterceptProxy forwards intercepted requests to their host over TLS
// the proxy verifies against roots (nil: the system's, which in the
// sidecar is SSL_CERT_FILE, the CAs airlock trusts), reaching only the
// addresses the policy accepts.
func (s *Server) newInterceptProxy(roots *x509.CertPool) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			st := pr.In.Context().Value(stateKey{}).(*forwardState)
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = st.target
			pr.Out.URL.User = nil
			pr.Out.Host = pr.In.Host
			for k := range pr.Out.Header {
				if strings.HasPrefix(k, "Proxy-") {
					pr.Out.Header.Del(k)
				}
			}
		},
		FlushInterval:  -1,
		ModifyResponse: recordCuts,
		ErrorHandler:   s.forwardError,
		Transport: &http.Transport{
			Proxy: nil,
			DialTLSContext: func(ctx context.Context, _, address string) (net.Conn, error) {
				host, port, err := splitTarget(address, 0)
				if err != nil {
					return nil, err
				}
				addrs, err := s.resolve(ctx, host)
				if err != nil {
					return nil, err
				}
				c, err := s.dial(ctx, addrs, port)
				if err != nil {
					return nil, err
				}
				tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: roots, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
				if err := tc.HandshakeContext(ctx); err != nil {
					c.Close()
					return nil, err
				}
				return tc, nil
			},
			DisableCompression:    true,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       60 * time.Second,
			ResponseHeaderTimeout: 5 * time.Minute,
			ExpectContinueTimeout: time.Second,
		},
	}
}

// replayConn reads what the ClientHello peek consumed before the rest of
// the connection, and counts the bytes each way.
type replayConn struct {
	net.Conn
	r        io.Reader
	up, down atomic.Int64
}

func (c *replayConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.up.Add(int64(n))
	return n, err
}

func (c *replayConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.down.Add(int64(n))
	return n, err
}

// oneConnListener hands http.Server one connection, then reports itself
// closed.
type oneConnListener struct {
	mu   sync.Mutex
	conn net.Conn
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil, net.ErrClosed
	}
	c := l.conn
	l.conn = nil
	return c, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{} }

var errNoCA = errors.New("injections need the run's interception CA")

// setupInjection prepares interception for cfg's injections, if any.
func (s *Server) setupInjection(cfg Config) error {
	if len(cfg.Inject) == 0 {
		return nil
	}
	if cfg.CA == nil {
		return errNoCA
	}
	var err error
	if s.inject, err = newInjections(cfg.Inject); err != nil {
		return err
	}
	if s.leaves, err = NewLeafIssuer(*cfg.CA); err != nil {
		return err
	}
	s.interceptProxy = s.newInterceptProxy(cfg.UpstreamRoots)
	return nil
}

// finishIntercept serves an intercepted tunnel and logs it.
func (s *Server) finishIntercept(client net.Conn, br *bufio.Reader, hello []byte, host, sni string, inj []injection, rec *Record, finish func(bool, string)) {
	up, down, n, err := s.intercept(client, br, hello, host, rec.Port, inj)
	rec.BytesUp, rec.BytesDown = up, down
	reason := fmt.Sprintf("intercepted (injected credentials), sni %s, %d requests", sni, n)
	if err != nil {
		reason += "; " + err.Error()
	}
	if s.expired.Err() != nil {
		reason += "; cut at the deadline: " + s.meter.deadlineReason()
	}
	finish(true, reason)
}
