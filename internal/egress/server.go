package egress

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/internal/budget"
)

// Resolver looks up host names. *net.Resolver implements it; it honours
// /etc/hosts, so names given to the proxy container with --add-host work.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Server.
type Config struct {
	Policy Policy
	// Held are the secrets airlock holds (API keys, tokens); requests that
	// carry one, in any common encoding, are refused.
	Held []string
	// Scan is how requests are scanned for credentials (modes per host,
	// how much of a body); held secrets are refused in every mode.
	Scan ScanConfig
	// API enables the model-API endpoint; nil disables it (healthz still
	// answers).
	API *APIConfig
	// Audit receives one record per decision; nil discards them.
	Audit *AuditLog
	// Resolver defaults to net.DefaultResolver.
	Resolver Resolver
	// Budget is what the run may spend; the proxy meters model responses
	// and refuses once a limit is reached.
	Budget Budget
	// MeterFile is where the meter is written after every model response;
	// "" keeps it in memory only.
	MeterFile string
	// Injected credentials (intercept.go): CONNECT tunnels to their hosts
	// are intercepted with a certificate from CA, and requests forwarded
	// over TLS verified against UpstreamRoots (nil: the system's).
	Inject        []Injection
	CA            *CA
	UpstreamRoots *x509.CertPool
}

// APIConfig is the credential-injecting model-API endpoint.
type APIConfig struct {
	// Upstream is the real API (or gateway) base URL. It is chosen by the
	// operator, not the agent, so it is not subject to the policy or the
	// address filter: a gateway on a private address must keep working.
	Upstream *url.URL
	// Headers are set on every forwarded request, e.g. "x-api-key": the
	// real key, or "Authorization": "Bearer " + token.
	Headers map[string]string
	// Placeholder is the fake credential the agent holds. Whatever
	// credential the agent sends is dropped; one other than the
	// placeholder is noted in the audit log.
	Placeholder string
	// Routes are the only requests forwarded; nil means Claude Code's
	// (DefaultAPIRoutes("claude")).
	Routes []APIRoute
	// Strip are the request headers dropped before Headers are set,
	// whatever the agent put in them; nil means x-api-key and
	// Authorization.
	Strip []string
	// Usage names the wire format whose usage is metered: "anthropic"
	// (also when empty), "openai-responses", "openai-chat", "gemini" or
	// "bedrock".
	Usage string
	// Provider is who sells the model, for its price: "anthropic" (also
	// when empty; and any other API's list price), "bedrock" or "vertex"
	// (budget.ProviderPriceOf). Region is the provider's region (Vertex:
	// "global" or a regional endpoint such as "us-east5"), which prices
	// some models differently.
	Provider, Region string
	// Cloud, when set, authenticates every forwarded request with
	// CloudCredentials (SigV4 or a bearer token) instead of Headers; the
	// host replaces them as they expire (WatchCredentials).
	Cloud            *CloudAuth
	CloudCredentials CloudCredentials
}

// Server is the egress proxy: an HTTP proxy (CONNECT and absolute-form
// plain HTTP) enforcing the policy, and the model-API endpoint.
type Server struct {
	policy   Policy
	scanner  atomic.Pointer[Scanner]
	heldMu   sync.Mutex
	held     []string // what scanner refuses; grows as credentials refresh
	cloud    *cloudAuthenticator
	scan     ScanConfig
	api      *APIConfig
	audit    *AuditLog
	resolver Resolver
	forward  *httputil.ReverseProxy
	apiProxy *httputil.ReverseProxy
	routes   []APIRoute
	usage    usageFormat
	meter    *meter
	sshPort  int      // tunnels to it carry SSH (SSHPort; a test's own port)
	idle     idlePool // kept upstream connections of forwardDirect

	// Injection (intercept.go).
	inject         []injection
	leaves         *LeafIssuer
	interceptProxy *httputil.ReverseProxy

	// expired ends at the deadline: every request in flight is cut.
	expired    context.Context
	expireNow  context.CancelFunc
	expireOnce sync.Once

	mu      sync.Mutex
	tunnels map[net.Conn]struct{}
}

const (
	dialTimeout  = 10 * time.Second
	helloTimeout = 10 * time.Second
)

// NewServer checks cfg and builds a server.
func NewServer(cfg Config) (*Server, error) {
	mode, err := ParseMode(string(cfg.Policy.Mode))
	if err != nil {
		return nil, err
	}
	cfg.Policy.Mode = mode
	if cfg.Scan.Mode, err = ParseScanMode(string(cfg.Scan.Mode)); err != nil {
		return nil, err
	}
	for _, h := range cfg.Scan.Hosts {
		if _, err := ParseScanHost(h.Pattern); err != nil {
			return nil, fmt.Errorf("scan host: %w", err)
		}
		if _, err := ParseScanMode(string(h.Mode)); err != nil || h.Mode == "" {
			return nil, fmt.Errorf("scan host %s: unknown scan mode %q: use block, log or off", h.Pattern, h.Mode)
		}
	}
	for _, r := range append(append([]Rule(nil), cfg.Policy.Allow...), cfg.Policy.Deny...) {
		if r.Pattern == "" {
			return nil, fmt.Errorf("egress rule from %s has an empty pattern", r.Source)
		}
	}
	s := &Server{
		policy:   cfg.Policy,
		held:     append([]string(nil), cfg.Held...),
		scan:     cfg.Scan,
		api:      cfg.API,
		audit:    cfg.Audit,
		resolver: cfg.Resolver,
		tunnels:  map[net.Conn]struct{}{},
		meter:    newMeter(cfg.MeterFile, cfg.Budget, time.Now),
		sshPort:  SSHPort,
	}
	s.expired, s.expireNow = context.WithCancel(context.Background())
	if cfg.API != nil && cfg.API.Cloud != nil {
		if s.cloud, err = newCloudAuthenticator(*cfg.API.Cloud, cfg.API.CloudCredentials); err != nil {
			return nil, err
		}
		s.held = append(s.held, cfg.API.CloudCredentials.Secrets()...)
	}
	s.scanner.Store(NewScanner(s.held))
	if s.resolver == nil {
		s.resolver = net.DefaultResolver
	}
	s.forward = &httputil.ReverseProxy{
		Rewrite:        rewriteForward,
		Transport:      s.forwardTransport(),
		ModifyResponse: recordCuts,
		ErrorHandler:   s.forwardError,
	}
	if err := s.setupInjection(cfg); err != nil {
		return nil, err
	}
	if cfg.API != nil {
		if err := checkAPIConfig(cfg.API); err != nil {
			return nil, err
		}
		s.routes = cfg.API.Routes
		if s.routes == nil {
			s.routes = DefaultAPIRoutes("claude")
		}
		if err := checkRoutes(s.routes); err != nil {
			return nil, err
		}
		if s.usage, err = usageFormats(cfg.API.Usage); err != nil {
			return nil, err
		}
		if err := budget.CheckProvider(cfg.API.Provider); err != nil {
			return nil, err
		}
		s.meter.provider, s.meter.region = cfg.API.Provider, cfg.API.Region
		s.apiProxy = s.newAPIProxy()
	}
	return s, nil
}

func checkAPIConfig(c *APIConfig) error {
	u := c.Upstream
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("model API upstream must be an http:// or https:// URL with a host, got %v", u)
	}
	for k, v := range c.Headers {
		if k == "" || strings.ContainsAny(k+v, "\r\n\x00") {
			return fmt.Errorf("model API header %q: names must be non-empty and values single-line", k)
		}
	}
	return nil
}

// denial is a policy refusal; it carries the text for the 403.
type denial struct {
	reason string // short, for the header and the audit log
	hint   string // what the user can do about it
	rule   string
}

func (d *denial) Error() string { return d.reason }

func (s *Server) log(r Record) {
	// The audit writer failing must not take the proxy down; the lead's
	// wiring watches the file.
	_ = s.audit.Write(r)
}

// writeDenied answers 403 with X-Airlock-Denied and a one-line body.
func writeDenied(w http.ResponseWriter, d *denial) {
	w.Header().Set("X-Airlock-Denied", headerSafe(d.reason))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	msg := "airlock egress proxy: denied: " + d.reason + "."
	if d.hint != "" {
		msg += " " + d.hint
	}
	fmt.Fprintln(w, headerSafe(msg))
}

func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// precheck runs the DNS-free stages in order: canonicalise, secret scan of
// the host, policy, secret scan of the rest of the request (target,
// headers and, for plain HTTP, the body's first bytes) under the host's
// scan mode. rec is filled with what may be logged.
func (s *Server) precheck(r *http.Request, rawHost string, port int, rec *Record) (string, *denial) {
	canon, err := Canonical(rawHost)
	if err != nil {
		rec.Host = headerSafe(rawHost)
		return "", &denial{reason: "invalid host: " + err.Error(), hint: "Use a plain host name."}
	}
	rec.Host = canon
	mode := s.scan.ModeFor(canon)
	refuse, logged, _ := applyMode(mode, func(heldOnly bool) (*Hit, error) {
		if rule, hit := s.scanner.Load().scanHost(rawHost, heldOnly); hit {
			return newHit(rule, "host name"), nil
		}
		return nil, nil
	})
	if refuse != nil || logged != nil {
		rec.Host = s.redactHost(canon)
		rec.Path = ""
	}
	if refuse != nil {
		return "", scanDenial(refuse)
	}
	dec := s.policy.Decide(canon, port)
	rec.Rule = dec.Rule
	if !dec.Allowed {
		return "", s.policyDenial(canon, port, dec)
	}
	var bodyLimit int64
	if r.Method != http.MethodConnect {
		bodyLimit = s.scan.BodyLimit
	}
	refuse, logged2, err := applyMode(mode, func(heldOnly bool) (*Hit, error) {
		return s.scanner.Load().scanRequest(r, bodyLimit, heldOnly)
	})
	if err != nil {
		return "", &denial{reason: err.Error()}
	}
	if logged == nil {
		logged = logged2
	}
	for _, h := range []*Hit{refuse, logged} {
		if h != nil && strings.HasPrefix(h.Where, "URL") {
			rec.Path = "[redacted]"
		}
	}
	if logged != nil && refuse == nil {
		rec.Scan = "logged, not blocked (scan = \"log\"): " + logged.String()
	}
	if refuse != nil {
		return "", scanDenial(refuse)
	}
	if d := s.foreignPlaceholder(canon, port, r); d != nil {
		return "", d
	}
	return canon, nil
}

// scanDenial is the refusal for a secret-scan hit: it names the rule and
// where it matched, never the text.
func scanDenial(h *Hit) *denial {
	return &denial{reason: "secret scan: " + h.String(), rule: h.Rule,
		hint: "The request looks like it carries a credential; it was not sent."}
}

func (s *Server) policyDenial(host string, port int, dec Decision) *denial {
	target := host
	if port != 443 && port != 80 {
		target = net.JoinHostPort(host, strconv.Itoa(port))
	}
	hint := fmt.Sprintf("To allow it, run with --allow %s or add it to [egress] allow.", target)
	if dec.Rule != "" {
		hint = "A deny rule matches it; deny rules beat allow rules."
	}
	return &denial{reason: dec.Reason, rule: dec.Rule, hint: hint}
}

// redactHost keeps at most the last two labels of a host that carried a
// secret, so the log shows where it was going but not what.
func (s *Server) redactHost(host string) string {
	labels := strings.Split(host, ".")
	keep := ""
	for i := len(labels) - 1; i >= 0 && i >= len(labels)-2; i-- {
		cand := strings.Join(labels[i:], ".")
		if _, hit := s.scanner.Load().ScanHost(cand); hit {
			break
		}
		keep = cand
	}
	if keep == "" {
		return "[redacted]"
	}
	return "[redacted]." + keep
}

// resolve looks the host up (unless it is an IP literal) and keeps the
// addresses the policy accepts. Names failing policy never get here.
func (s *Server) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = s.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	var ok []netip.Addr
	var first error
	for _, a := range addrs {
		if err := s.policy.CheckAddr(a); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		ok = append(ok, a.Unmap())
	}
	if len(ok) == 0 {
		if first == nil {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
		return nil, &denial{reason: first.Error(), hint: "The name resolves to an address the sandbox may not reach."}
	}
	return ok, nil
}

// dial connects to the first reachable address. The dialer's Control hook
// checks the socket's actual address once more, so nothing but a checked
// address is ever connected to, whatever happens between lookup and dial.
func (s *Server) dial(ctx context.Context, addrs []netip.Addr, port int) (net.Conn, error) {
	d := &net.Dialer{Timeout: dialTimeout, Control: s.control}
	var last error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

func (s *Server) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &denial{reason: "unparseable dial address " + address}
	}
	if err := s.policy.CheckAddr(ap.Addr()); err != nil {
		return &denial{reason: err.Error()}
	}
	return nil
}

// ProxyHandler serves CONNECT and absolute-form plain-HTTP requests.
func (s *Server) ProxyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.meter.deadlinePassed() {
			s.refuseExpired(w, r)
			return
		}
		switch {
		case r.Method == http.MethodConnect:
			s.handleConnect(w, r)
		case r.URL.IsAbs() && r.URL.Scheme == "http":
			s.handleForward(w, r)
		case r.URL.IsAbs():
			http.Error(w, "airlock egress proxy: only http:// URLs can be forwarded; use CONNECT for "+r.URL.Scheme, http.StatusBadRequest)
		default:
			http.Error(w, "airlock egress proxy: this is an HTTP proxy; send absolute-form requests or CONNECT", http.StatusBadRequest)
		}
	})
}

func splitTarget(authority string, defPort int) (string, int, error) {
	host, portStr, err := net.SplitHostPort(authority)
	if err != nil {
		if defPort == 0 || strings.Count(authority, ":") > 0 && !strings.HasSuffix(authority, "]") {
			return authority, 0, fmt.Errorf("bad target %q: want host:port", authority)
		}
		return strings.Trim(authority, "[]"), defPort, nil
	}
	port, err := parsePort(portStr)
	if err != nil {
		return host, 0, fmt.Errorf("bad target %q: %w", authority, err)
	}
	return host, port, nil
}

// forwardState travels with a forwarded request so the error handler and
// the audit record agree.
type forwardState struct {
	target  string   // canonical host:port to dial
	up      *url.URL // the model API route's upstream
	metered bool     // a model request: meter its response
	model   string   // the model its path names (the route's "*"), or ""
	denied  *denial
	err     error
	// cut is why a response that had begun did not end: a read from the
	// upstream or a write to the agent that failed midway.
	cut error
}

// cutRecorder notes in st why reading an upstream response body failed
// midway, which httputil.ReverseProxy otherwise keeps to itself.
type cutRecorder struct {
	io.ReadCloser
	st *forwardState
}

func (c cutRecorder) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err != nil && err != io.EOF && c.st.cut == nil { //nolint:errorlint // io.EOF is returned as is
		c.st.cut = fmt.Errorf("reading the upstream's response: %w", err)
	}
	return n, err
}

// recordCuts is every ReverseProxy's ModifyResponse step: it notes in the
// request's forwardState why the response body could not be read to the end.
func recordCuts(resp *http.Response) error {
	// A switched protocol's body is the connection itself, which the
	// ReverseProxy needs to be able to write to as well.
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	if st, ok := resp.Request.Context().Value(stateKey{}).(*forwardState); ok && resp.Body != nil {
		resp.Body = cutRecorder{ReadCloser: resp.Body, st: st}
	}
	return nil
}

// cutReason says how a response that was cut midway ended.
func cutReason(status int, cut error) string {
	if cut == nil {
		return fmt.Sprintf("status %d, cut midway", status)
	}
	return fmt.Sprintf("status %d, cut midway: %v", status, cut)
}

type stateKey struct{}

func (s *Server) handleForward(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := Record{Kind: KindHTTP, Method: r.Method, Path: r.URL.Path}
	host, port, err := splitTarget(r.URL.Host, 80)
	rec.Port = port
	if err != nil {
		rec.Host = headerSafe(r.URL.Host)
		s.deny(w, rec, &denial{reason: err.Error()}, start)
		return
	}
	canon, d := s.precheck(r, host, port, &rec)
	if d != nil {
		s.deny(w, rec, d, start)
		return
	}
	st := &forwardState{target: net.JoinHostPort(canon, strconv.Itoa(port))}
	var status int
	var aborted bool
	if directable(r) {
		status, aborted = s.forwardDirect(w, r, st, &rec, start)
		rec.DurationMS = time.Since(start).Milliseconds()
	} else {
		status, aborted = s.serveCounted(w, r, st, s.forward, &rec, start)
	}
	s.outcome(&rec, st, status, aborted)
	s.log(rec)
	if aborted {
		panic(http.ErrAbortHandler)
	}
}

// cut reports whether a request ended because the deadline cut it.
func (s *Server) cut(aborted bool, err error) bool {
	return (aborted || err != nil) && s.expired.Err() != nil
}

// refuseExpired answers any request after the deadline.
func (s *Server) refuseExpired(w http.ResponseWriter, r *http.Request) {
	s.expire()
	rec := Record{Kind: KindHTTP, Method: r.Method, Host: headerSafe(r.URL.Hostname()), Path: headerSafe(r.URL.Path)}
	if r.Method == http.MethodConnect {
		rec.Kind, rec.Path = KindConnect, ""
		rec.Host = headerSafe(r.Host)
		if h, p, err := splitTarget(r.Host, 0); err == nil {
			rec.Host, rec.Port = headerSafe(h), p
		}
	}
	s.deny(w, rec, &denial{reason: "the run's time is up (" + s.meter.deadlineReason() + ")",
		hint: "The egress proxy refuses all traffic after the run's deadline."}, time.Now())
}

// expire is the deadline: from now on everything is refused, and whatever
// is open (tunnels, streams, forwarded requests) is cut.
func (s *Server) expire() {
	s.expireOnce.Do(func() {
		s.meter.expire()
		s.expireNow()
		s.cutTunnels()
		s.idle.closeAll(false)
	})
}

func (s *Server) deny(w http.ResponseWriter, rec Record, d *denial, start time.Time) {
	writeDenied(w, d)
	rec.Allowed = false
	rec.Reason = d.reason
	if d.rule != "" {
		rec.Rule = d.rule
	}
	rec.DurationMS = time.Since(start).Milliseconds()
	s.log(rec)
}

func rewriteForward(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(stateKey{}).(*forwardState)
	pr.Out.URL.Host = st.target
	pr.Out.URL.User = nil
	pr.Out.Host = ""
	for k := range pr.Out.Header {
		if strings.HasPrefix(k, "Proxy-") {
			pr.Out.Header.Del(k)
		}
	}
}

func (s *Server) forwardTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil, // never chain to a proxy from our own environment
		DialContext: func(ctx context.Context, _, address string) (net.Conn, error) {
			host, port, err := splitTarget(address, 0)
			if err != nil {
				return nil, err
			}
			addrs, err := s.resolve(ctx, host)
			if err != nil {
				return nil, err
			}
			return s.dial(ctx, addrs, port)
		},
		DisableCompression:    true,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 5 * time.Minute,
	}
}

func (s *Server) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	st, _ := r.Context().Value(stateKey{}).(*forwardState)
	var d *denial
	if errors.As(err, &d) {
		if st != nil {
			st.denied = d
		}
		writeDenied(w, d)
		return
	}
	if st != nil {
		st.err = err
	}
	http.Error(w, "airlock egress proxy: upstream error: "+err.Error(), http.StatusBadGateway)
}

type countingReader struct {
	r io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// countingWriter counts response bytes; Unwrap lets http.ResponseController
// reach the real writer's Flush.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
	err    error // the first write or flush to the agent that failed
}

// FlushError flushes as http.ResponseController would, noting a failure.
func (c *countingWriter) FlushError() error {
	err := http.NewResponseController(c.ResponseWriter).Flush()
	if err != nil && c.err == nil {
		c.err = err
	}
	return err
}

func (c *countingWriter) WriteHeader(code int) {
	if c.status == 0 && code >= 200 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Serve runs the proxy on proxyLn and the model-API endpoint (with
// GET /healthz) on apiLn until ctx ends; either listener may be nil. Open
// tunnels are closed on the way out. On a Unix listener it also takes the
// connections a Relay hands over, and ends when the relay's lifeline does
// (PassListener); on a ChannelListener it ends when the lifeline of
// RelayChannel's relay does.
func (s *Server) Serve(ctx context.Context, proxyLn, apiLn net.Listener) error {
	// The end of the relay's lifeline ends the proxy as ctx's does.
	ctx, lifelineEnded := context.WithCancel(ctx)
	defer lifelineEnded()
	var servers []*http.Server
	errc := make(chan error, 2)
	start := func(ln net.Listener, h http.Handler) {
		if ul, ok := ln.(*net.UnixListener); ok {
			// The relay hands the agent's connections over on it.
			ln = PassListener(ul, lifelineEnded)
		}
		if cl, ok := ln.(*channelListener); ok {
			go func() {
				select {
				case <-cl.lifelineEnded():
					lifelineEnded()
				case <-ctx.Done():
				}
			}()
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
		servers = append(servers, srv)
		go func() { errc <- srv.Serve(ln) }()
	}
	if proxyLn != nil {
		start(proxyLn, s.ProxyHandler())
	}
	if apiLn != nil {
		start(apiLn, s.APIHandler())
	}
	if len(servers) == 0 {
		return errors.New("egress proxy: no listener to serve on")
	}
	s.meter.flush()
	if d := s.meter.budget.Deadline; !d.IsZero() {
		t := time.AfterFunc(time.Until(d), s.expire)
		defer t.Stop()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.closeTunnels()
	s.idle.closeAll(true)
	for _, srv := range servers {
		_ = srv.Shutdown(sctx)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("egress proxy: %w", err)
	}
	return nil
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tunnels == nil {
		return false
	}
	s.tunnels[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tunnels, c)
}

// cutTunnels closes every open tunnel; new ones may still be tracked.
func (s *Server) cutTunnels() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.tunnels {
		c.Close()
	}
}

func (s *Server) closeTunnels() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.tunnels {
		c.Close()
	}
	s.tunnels = nil
}

// serveCounted serves r through h and fills rec with the address dialled,
// the bytes each way and the duration. The request is cut at the deadline.
// It returns the response status, and whether h aborted the response
// midway (http.ErrAbortHandler, which the caller must panic with again once
// it has logged, so the server drops the connection).
func (s *Server) serveCounted(w http.ResponseWriter, r *http.Request, st *forwardState, h http.Handler, rec *Record, start time.Time) (status int, aborted bool) {
	var addr string
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(s.expired, cancel)
	defer stop()
	ctx = context.WithValue(ctx, stateKey{}, st)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { addr = info.Conn.RemoteAddr().String() },
	})
	body := &countingReader{r: r.Body}
	r = r.WithContext(ctx)
	if r.Body != nil {
		r.Body = body
	}
	cw := &countingWriter{ResponseWriter: w}
	// Go's HTTP/1 server closes the agent's request body once the
	// response has begun (golang/go#40747). The transport, having sent the
	// declared length, reads the body once more to see it ends there; that
	// read then fails, the transport drops the upstream connection, and
	// the answer streaming back is cut short: under load, about one model
	// response in a few thousand. The body must stay readable.
	_ = http.NewResponseController(w).EnableFullDuplex()
	func() {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler { //nolint:errorlint // the sentinel is panicked as is
					panic(v)
				}
				aborted = true
			}
		}()
		h.ServeHTTP(cw, r)
	}()
	if aborted && st.cut == nil && cw.err != nil {
		st.cut = fmt.Errorf("writing to the agent: %w", cw.err)
	}
	rec.Addr = addr
	rec.BytesUp, rec.BytesDown = body.n, cw.n
	rec.DurationMS = time.Since(start).Milliseconds()
	return cw.status, aborted
}

// outcome records how a forwarded request ended: refused on the way, cut
// at the deadline, failed upstream, or answered with status.
func (s *Server) outcome(rec *Record, st *forwardState, status int, aborted bool) {
	switch {
	case st.denied != nil:
		rec.Reason = st.denied.reason
	case s.cut(aborted, st.err):
		rec.Allowed, rec.Reason = true, "cut at the deadline: "+s.meter.deadlineReason()
	case st.err != nil:
		rec.Allowed, rec.Reason = true, "upstream error: "+st.err.Error()
	case aborted:
		rec.Allowed, rec.Reason = true, cutReason(status, st.cut)
	default:
		rec.Allowed, rec.Reason = true, fmt.Sprintf("status %d", status)
	}
}
