package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// CookieName is the session cookie.
const CookieName = "airlock_session"

// CSRFHeader carries the CSRF token on every POST.
const CSRFHeader = "X-Airlock-CSRF"

// csp lets the page load its own scripts, styles and connections and
// nothing else: a string from a sandbox that slipped into the page as
// markup could neither run inline script nor send anything elsewhere.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"

// NewToken returns a random per-start token: 32 bytes, base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// LoadSecret returns the session secret kept at path, making one if there
// is none or rotate is set. The file must be a regular file of ours, mode
// 0600: anyone who can read it can use the dashboard.
func LoadSecret(path string, rotate bool) ([]byte, error) {
	if !rotate {
		b, err := ReadPrivate(path)
		if err == nil {
			s, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(string(b)))
			if err != nil || len(s) < 32 {
				return nil, fmt.Errorf("the web UI's session secret %s is not valid: remove it, or start with --new-session", path)
			}
			return s, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		return nil, err
	}
	if err := WritePrivate(path, []byte(base64.RawURLEncoding.EncodeToString(s)+"\n")); err != nil {
		return nil, err
	}
	return s, nil
}

// ReadPrivate reads a file that must be ours alone: a regular file (no
// link), owned by us, mode 0600.
func ReadPrivate(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: remove it", path)
	}
	if fi.Mode().Perm() != 0o600 {
		return nil, fmt.Errorf("%s has mode %04o; it must be 0600 (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return nil, fmt.Errorf("%s belongs to uid %d, not to you: remove it", path, st.Uid)
	}
	return os.ReadFile(path)
}

// WritePrivate writes data to path, mode 0600, replacing it atomically.
func WritePrivate(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// cookieValue is what the session cookie holds: the secret itself.
func (s *Server) cookieValue() string {
	return base64.RawURLEncoding.EncodeToString(s.opts.Secret)
}

// csrf is the CSRF token: derived from the secret, so it survives a
// restart with the cookie, and unknown to a page of another origin.
func (s *Server) csrf() string {
	m := hmac.New(sha256.New, s.opts.Secret)
	m.Write([]byte("csrf"))
	return hex.EncodeToString(m.Sum(nil))
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// allowHosts fills the Host headers the server answers to. A loopback bind
// answers to its own address and to localhost names with its port; a
// specific address to itself only; a wildcard bind to this machine's
// addresses and name (checked per request).
func (s *Server) allowHosts(a *net.TCPAddr) {
	s.port = strconv.Itoa(a.Port)
	s.hosts = map[string]bool{net.JoinHostPort(a.IP.String(), s.port): true}
	switch {
	case a.IP.IsLoopback():
		for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
			s.hosts[net.JoinHostPort(h, s.port)] = true
		}
	case a.IP.IsUnspecified():
		s.wildcard = true
	}
}

// hostOK is the DNS rebinding check: a page of evil.example whose name was
// made to resolve to this address sends Host: evil.example.
func (s *Server) hostOK(host string) bool {
	host = strings.ToLower(host)
	if s.hosts[host] {
		return true
	}
	if !s.wildcard {
		return false
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil || port != s.port {
		return false
	}
	if h == "localhost" {
		return true
	}
	if name, err := os.Hostname(); err == nil && strings.EqualFold(h, name) {
		return true
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// originOK: an Origin, when sent, must be this server as the browser sees
// it: scheme://Host.
func (s *Server) originOK(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	scheme := "http"
	if s.opts.TLS != nil {
		scheme = "https"
	}
	u, err := url.Parse(o)
	return err == nil && u.Scheme == scheme && strings.EqualFold(u.Host, r.Host) && u.Path == "" && u.User == nil
}

// guard is every check a request passes before a handler sees it.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		api := strings.HasPrefix(r.URL.Path, "/api/")
		if api {
			h.Set("Cache-Control", "no-store")
		}
		if !s.hostOK(r.Host) {
			deny(w, api, http.StatusForbidden, "this server answers only to its own address (Host "+strconv.Quote(r.Host)+" refused)")
			return
		}
		if !s.originOK(r) {
			deny(w, api, http.StatusForbidden, "cross-origin request refused")
			return
		}
		websocket := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
		if websocket && r.Header.Get("Origin") == "" {
			deny(w, api, http.StatusForbidden, "a WebSocket needs an Origin")
			return
		}
		if tok, ok := r.URL.Query()["token"]; ok && r.Method == http.MethodGet && !api && !websocket {
			s.exchange(w, r, tok[0])
			return
		}
		c, err := r.Cookie(CookieName)
		if err != nil || !equal(c.Value, s.cookieValue()) {
			if api {
				writeError(w, http.StatusUnauthorized, "not signed in: open the URL that `airlock ui` printed")
			} else {
				signInPage(w)
			}
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPost:
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, "a POST must be Content-Type: application/json")
				return
			}
			if !equal(r.Header.Get(CSRFHeader), s.csrf()) {
				writeError(w, http.StatusForbidden, "missing or wrong "+CSRFHeader+" header (get it from /api/session)")
				return
			}
		default:
			deny(w, api, http.StatusMethodNotAllowed, r.Method+" is not allowed")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// exchange turns the printed URL's token into the session cookie and sends
// the browser on to the same page without the token, so that it is not
// left in the address bar or history.
func (s *Server) exchange(w http.ResponseWriter, r *http.Request, tok string) {
	if !equal(tok, s.opts.Token) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, signInHTML("This link is no longer valid: each start of <code>airlock ui</code> prints a new one. Open the URL it printed last."))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    s.cookieValue(),
		Path:     "/",
		HttpOnly: true,
		Secure:   s.opts.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	q := r.URL.Query()
	q.Del("token")
	u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

func deny(w http.ResponseWriter, api bool, code int, msg string) {
	if api {
		writeError(w, code, msg)
		return
	}
	http.Error(w, msg, code)
}

func signInPage(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	fmt.Fprint(w, signInHTML("Open the URL that <code>airlock ui</code> printed: it signs this browser in."))
}

func signInHTML(msg string) string {
	return `<!doctype html><html><head><meta charset="utf-8"><title>airlock</title></head><body><h1>airlock</h1><p>` + msg + `</p></body></html>`
}
