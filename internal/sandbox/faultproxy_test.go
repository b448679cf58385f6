package sandbox_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
)

// faultProxy is an engine's API socket behind a proxy that fails the next
// requests it picks with the engine's own error answer (a 500 and its JSON
// body), as the engine fails them under a race the test cannot time.
// Everything else reaches the real engine.
type faultProxy struct {
	mu     sync.Mutex
	fails  int    // picked requests still to fail
	answer string // the body they get
	seen   int    // requests failed
}

func (f *faultProxy) failNext(n int, answer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails, f.answer = n, answer
}

func (f *faultProxy) failed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

// serve starts the proxy in front of the engine's socket real, failing
// requests that pick reports, and returns the proxy's socket.
func (f *faultProxy) serve(t *testing.T, real string, pick func(*http.Request) bool) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "engine"}) },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", real)
		}},
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if pick(r) {
			f.mu.Lock()
			fail, answer := f.fails > 0, f.answer
			if fail {
				f.fails--
				f.seen++
			}
			f.mu.Unlock()
			if fail {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, answer)
				return
			}
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}
