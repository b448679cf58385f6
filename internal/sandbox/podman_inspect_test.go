package sandbox_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// A container's process that exits while Podman inspects it fails that
// inspect ("read /proc/N/cgroup: no such process", seen in CI from a List
// while another container ended). Inspect, List and Wait look again and
// report the container; a failure that goes on is still reported, and
// other errors are not retried.
func TestPodmanInspectWhileExiting(t *testing.T) {
	p := testkit.Podman(t)
	importImage(t, p)
	ctx := context.Background()
	label := map[string]string{"airlock.test": "podman-exiting"}
	spec := sandbox.Spec{Name: "airlock-podman-exiting-test", Image: sandboxtest.Image,
		Cmd: []string{"sh", "-c", "sleep 2; exit 5"}, User: "1000:1000", Labels: label}
	p.Remove(ctx, spec.Name) // left by an earlier, killed test
	id, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Remove(context.Background(), id) })
	var f faultyPodman
	faulty := f.engine(t, id, spec.Name)
	if err := p.Start(ctx, id); err != nil {
		t.Fatal(err)
	}

	f.failNext(3, processGone)
	st, err := faulty.Inspect(ctx, id)
	if err != nil || st.Status != sandbox.StatusRunning {
		t.Fatalf("Inspect while the first inspects fail = %+v, %v; want running", st, err)
	}
	f.failNext(3, processGone)
	all, err := faulty.List(ctx, label)
	if err != nil || len(all) != 1 || all[0].Name != spec.Name {
		t.Fatalf("List while the first inspects fail = %+v, %v; want the container", all, err)
	}
	f.failNext(3, processGone)
	if code, err := faulty.Wait(ctx, id); err != nil || code != 5 {
		t.Fatalf("Wait while the first inspects fail = %d, %v; want 5", code, err)
	}
	if got := f.failed(); got != 9 {
		t.Errorf("%d inspects failed, want 9", got)
	}

	// A failure that does not end is reported, after a bounded wait.
	f.failNext(1<<30, processGone)
	start := time.Now()
	if _, err := faulty.Inspect(ctx, id); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Fatalf("Inspect while every inspect fails = %v; want Podman's error", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Inspect took %v to give up", d)
	}
	// Any other failure counts at once.
	before := f.failed()
	f.failNext(1<<30, `{"cause":"some other failure","message":"some other failure","response":500}`)
	if _, err := faulty.Inspect(ctx, id); err == nil || !strings.Contains(err.Error(), "some other failure") {
		t.Fatalf("Inspect = %v; want the other failure", err)
	}
	if got := f.failed() - before; got != 1 {
		t.Errorf("another failure was tried %d times, want once", got)
	}
}

// processGone is Podman's answer to the inspect of a container whose
// process has just gone, as CI met it.
const processGone = `{"cause":"no such process","message":"read /proc/32321/cgroup: no such process","response":500}`

// faultyPodman is the Podman service behind a proxy that fails the next
// inspects of one container with a given answer. Everything else reaches
// the real service.
type faultyPodman struct {
	mu     sync.Mutex
	fails  int // inspects still to fail
	answer string
	seen   int // inspects failed
}

func (f *faultyPodman) failNext(n int, answer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fails, f.answer = n, answer
}

func (f *faultyPodman) failed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

// engine starts the proxy and returns an engine that talks through it;
// the container may be named by its id or its name.
func (f *faultyPodman) engine(t *testing.T, id, name string) *sandbox.Docker {
	t.Helper()
	real := strings.TrimPrefix(sandbox.PodmanHost(os.Getenv, os.Getuid()), "unix://")
	sock := filepath.Join(t.TempDir(), "podman.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "podman"}) },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", real)
		}},
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (strings.HasSuffix(r.URL.Path, "/containers/"+id+"/json") || strings.HasSuffix(r.URL.Path, "/containers/"+name+"/json")) {
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
	d, err := sandbox.NewPodman("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
