// Package ui serves airlock's web dashboard: the front-end built from web/
// (embedded from dist), a JSON API, server-sent event streams and a
// WebSocket terminal into a sandbox. Everything it shows comes from a
// Backend, which the CLI implements with the very code its commands run.
//
// The server guards itself as docs/ui.md explains: a per-start token turned
// into a session cookie, Host and Origin checks against DNS rebinding and
// cross-site requests, a CSRF header and JSON-only POSTs, no CORS, and
// strict security headers.
package ui

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
)

// Backend is what the server needs from airlock: the operations behind each
// handler. Errors are shown to the user as they are, so they should be the
// CLI's own.
type Backend interface {
	// Project is the repository the server was started in.
	Project() string
	// Runs lists runs, newest first, without removed ones: this
	// project's, or every project's if all.
	Runs(ctx context.Context, all bool) ([]*store.Run, error)
	// Run is one run by its exact ID, reconciled with its sandbox.
	Run(ctx context.Context, id string) (*store.Run, error)
	// Summary is the agent's final text, raw.
	Summary(ctx context.Context, id string) (string, error)
	// Commits are the run's commits since its base, oldest first; with
	// withStat, each with its --stat (dearer: a running run's are read by
	// git in its sandbox).
	Commits(ctx context.Context, id string, withStat bool) ([]Commit, error)
	// Diff is what the run changed against its base.
	Diff(ctx context.Context, id string) (*Diff, error)
	// Egress is the run's egress audit log.
	Egress(ctx context.Context, id string) ([]EgressRecord, error)
	// Transcript is the run's transcript from byte offset from on.
	Transcript(ctx context.Context, id string, from int64) (*Transcript, error)
	// Action acts on a run as the CLI command of that name does.
	Action(ctx context.Context, id string, a Action) (*ActionResult, error)
	// StartRun starts a detached run, as `airlock run -d`.
	StartRun(ctx context.Context, req NewRun) (string, error)
	// NewChoices lists what a new run may be started with.
	NewChoices(ctx context.Context) (*NewChoices, error)
	// Terminal opens a TTY in the run's sandbox: bytes both ways, and
	// resize to change its size. Reading returns an error once the
	// terminal has ended; its text says why.
	Terminal(ctx context.Context, id string, cols, rows int) (io.ReadWriteCloser, func(cols, rows int), error)
}

// Options configure a Server.
type Options struct {
	// Addr is where to listen, host:port (port 0 picks one).
	Addr string
	// TLS, when set, serves HTTPS with it (a non-loopback address).
	TLS *tls.Config
	// Token is this start's secret, exchanged for the session cookie.
	Token string
	// Secret is the session secret the cookie carries.
	Secret []byte
	// AllProjects lists every project's runs by default.
	AllProjects bool
	// Version is airlock's version, for /api/session.
	Version string
	// Backend answers the API.
	Backend Backend
	// Log receives one line per server-side error; nil discards.
	Log io.Writer
	// Poll is how often streams look for changes (default 1s).
	Poll time.Duration
	// Heartbeat is how often streams send a comment to keep the
	// connection (and proxies) alive (default 15s).
	Heartbeat time.Duration
}

// Server is the dashboard's HTTP server.
type Server struct {
	opts     Options
	ln       net.Listener
	hosts    map[string]bool // accepted Host headers
	wildcard bool            // bound to every address: Host checked by port and local IPs
	port     string
	dist     fs.FS
	srv      *http.Server
}

// Listen opens the listener; Serve then answers on it.
func Listen(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("ui: no backend")
	}
	if len(opts.Secret) < 16 || len(opts.Token) < 16 {
		return nil, errors.New("ui: the session secret and token must be at least 16 bytes")
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.Addr, err)
	}
	s := &Server{opts: opts, ln: ln, dist: distFS()}
	s.allowHosts(ln.Addr().(*net.TCPAddr))
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         opts.TLS,
		ErrorLog:          log.New(opts.Log, "airlock ui: ", 0),
	}
	return s, nil
}

// URL is the address people open, with the token: the one place it is shown.
func (s *Server) URL(path string) string {
	return s.Base() + path + "?token=" + s.opts.Token
}

// Base is scheme://host:port of the server.
func (s *Server) Base() string {
	scheme := "http"
	if s.opts.TLS != nil {
		scheme = "https"
	}
	a := s.ln.Addr().(*net.TCPAddr)
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = reachableAddr()
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(a.Port))
}

// reachableAddr is the address to print for a server bound to every
// address: this machine's first IPv4 address beyond loopback (what a phone
// on the same network can reach), else localhost.
func reachableAddr() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "localhost"
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return "localhost"
}

// Addr is the address listened on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until ctx is done, then shuts down, closing streams
// and terminals.
func (s *Server) Serve(ctx context.Context) error {
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 1)
	go func() {
		if s.opts.TLS != nil {
			errc <- s.srv.ServeTLS(s.ln, "", "")
		} else {
			errc <- s.srv.Serve(s.ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(sctx)
	return nil
}

// Handler is the server's whole handler, guards included.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/session", s.apiSession)
	mux.HandleFunc("GET /api/runs", s.apiRuns)
	mux.HandleFunc("POST /api/runs", s.apiStartRun)
	mux.HandleFunc("GET /api/new", s.apiNew)
	mux.HandleFunc("GET /api/stream", s.streamRuns)
	mux.HandleFunc("GET /api/runs/{id}", s.apiRun)
	mux.HandleFunc("GET /api/runs/{id}/diff", s.apiDiff)
	mux.HandleFunc("GET /api/runs/{id}/egress", s.apiEgress)
	mux.HandleFunc("GET /api/runs/{id}/transcript", s.apiTranscript)
	mux.HandleFunc("GET /api/runs/{id}/stream", s.streamRun)
	mux.HandleFunc("GET /api/runs/{id}/terminal", s.terminal)
	mux.HandleFunc("POST /api/runs/{id}/{action}", s.apiAction)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API: "+r.Method+" "+r.URL.Path)
	})
	mux.HandleFunc("GET /assets/{file...}", s.asset)
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /new", s.page)
	mux.HandleFunc("GET /runs/{id}", s.page)
	mux.HandleFunc("GET /runs/{id}/terminal", s.page)
	return s.guard(mux)
}
