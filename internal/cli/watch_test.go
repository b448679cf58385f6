package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/watchd"
)

// lockedBuffer is an ErrOut several goroutines of a watcher write to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// watchEnv is a user's machine for the watcher: a store with runs being
// created by this very process (so they stay unfinished, and no engine
// is contacted until the test finishes them), and the engine named but
// never reached.
type watchEnv struct {
	t      *testing.T
	state  string
	st     *store.Store
	errOut *lockedBuffer
}

func newWatchEnv(t *testing.T) *watchEnv {
	t.Helper()
	home := t.TempDir()
	// Deep, as a long home directory would be: the socket's path is
	// longer than a Unix socket address may be.
	state := filepath.Join(home, strings.Repeat("s", 80), "state")
	st, err := store.Open(filepath.Join(state, "airlock"))
	if err != nil {
		t.Fatal(err)
	}
	return &watchEnv{t: t, state: state, st: st, errOut: &lockedBuffer{}}
}

func (e *watchEnv) factory() *Factory {
	environ := []string{
		"HOME=" + filepath.Dir(e.state),
		"XDG_STATE_HOME=" + e.state,
		"XDG_CONFIG_HOME=" + filepath.Join(filepath.Dir(e.state), "config"),
		"DOCKER_HOST=unix:///nonexistent/docker.sock",
		"PATH=" + os.Getenv("PATH"),
	}
	getenv := func(name string) string {
		for _, kv := range environ {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				return v
			}
		}
		return ""
	}
	return &Factory{
		IO:      &IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: e.errOut},
		Getenv:  getenv,
		Environ: func() []string { return environ },
		Now:     time.Now,
		Getwd:   func() (string, error) { return e.state, nil },
		UID:     os.Getuid(),
		GID:     os.Getgid(),
	}
}

// creating records a run this process is creating.
func (e *watchEnv) creating(id string) {
	e.t.Helper()
	if err := e.st.Create(&store.Run{ID: id, Name: "w", Project: e.state, Status: store.StatusCreating, CreatorPID: os.Getpid(), CreatedAt: time.Now()}); err != nil {
		e.t.Fatal(err)
	}
}

// finish records the run's end as a finished, collected run.
func (e *watchEnv) finish(id string) {
	e.t.Helper()
	if _, err := e.st.Update(id, func(r *store.Run) error {
		r.Status, r.Error, r.Harvested, r.CreatorPID = store.StatusFailed, "test over", true, 0
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

// watch runs `airlock watcher id` in-process until it returns.
func (e *watchEnv) watch(id string) <-chan error {
	done := make(chan error, 1)
	go func() {
		cmd := NewRootCmd(e.factory())
		cmd.SetArgs([]string{"watcher", id, "--engine", "docker"})
		done <- cmd.ExecuteContext(context.Background())
	}()
	return done
}

func (e *watchEnv) place() watchd.Place {
	e.t.Helper()
	f := e.factory()
	p, err := f.watcherPlace(e.st)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// waitListening waits until the watcher answers offers: until a
// connection is taken, not until the socket is there (it is from bind, a
// moment before listen, when connections are refused).
func (e *watchEnv) waitListening(p watchd.Place) {
	e.t.Helper()
	for end := time.Now().Add(10 * time.Second); ; {
		if listening(p) {
			return
		}
		if time.Now().After(end) {
			e.t.Fatalf("the watcher does not listen\n%s", e.errOut)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *watchEnv) watchLog(id string) string {
	data, _ := os.ReadFile(filepath.Join(e.st.RunDir(id), watchLog))
	return string(data)
}

// snapshot is every file of the store but the watcher's own and the
// runs' watch logs, with its content.
func (e *watchEnv) snapshot() map[string]string {
	e.t.Helper()
	files := map[string]string{}
	root := e.st.Dir()
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "watch" {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() != watchLog {
			data, _ := os.ReadFile(path)
			files[rel] = string(data)
		} else if d.IsDir() {
			files[rel+"/"] = ""
		}
		return nil
	})
	return files
}

// One watcher process supervises every run offered to it, each with its
// messages in its own watch.log, refuses what is not a run of its store
// (changing nothing), and ends when its last run has: then the next run
// finds no watcher and starts its own.
func TestSharedWatcher(t *testing.T) {
	e := newWatchEnv(t)
	e.creating("first-0000000a")
	e.creating("second-0000000b")
	e.creating("other-0000000c")
	p := e.place()
	done := e.watch("first-0000000a")
	e.waitListening(p)

	before := e.snapshot()
	for _, ref := range []string{"nosuch-00000000", "../runs/first-0000000a", "first", "First-0000000A", "first-0000000a/..", strings.Repeat("a", 300)} {
		if _, err := watchd.OfferOnce(context.Background(), p, ref); !errors.Is(err, watchd.ErrRefused) {
			t.Errorf("offer of %.40q: %v, want refused", ref, err)
		}
	}
	for _, msg := range []string{"garbage\n", "run \x1b[2J\n", strings.Repeat("x", 1<<16)} {
		if answer := rawOffer(t, p, msg); !strings.HasPrefix(answer, "no ") {
			t.Errorf("%.20q: answer %q, want a refusal", msg, answer)
		}
	}
	if after := e.snapshot(); !maps.Equal(before, after) {
		t.Errorf("refused offers changed the store:\nbefore %v\nafter  %v", before, after)
	}

	o, err := watchd.OfferOnce(context.Background(), p, "second-0000000b")
	if err != nil {
		t.Fatalf("offer of a run: %v\n%s", err, e.errOut)
	}
	if o.PID != os.Getpid() {
		t.Errorf("taken by process %d, want the watcher %d", o.PID, os.Getpid())
	}

	e.finish("first-0000000a")
	e.finish("second-0000000b")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch: %v\n%s", err, e.errOut)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the watcher did not end with its runs\n%s", e.errOut)
	}
	for _, id := range []string{"first-0000000a", "second-0000000b"} {
		if log := e.watchLog(id); !strings.Contains(log, "Run "+id+" failed\n") {
			t.Errorf("%s's watch.log does not say how it ended:\n%s", id, log)
		}
	}
	if log := e.watchLog("second-0000000b"); !strings.Contains(log, "Supervised by the shared watcher") {
		t.Errorf("the offered run's watch.log does not name its watcher:\n%s", log)
	}
	if log := e.watchLog("first-0000000a"); strings.Contains(log, "second-0000000b") {
		t.Errorf("another run's messages are in first's watch.log:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, p.Key+".sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket outlived its watcher: %v", err)
	}
	if _, err := watchd.Offer(context.Background(), p, "other-0000000c", time.Second); !errors.Is(err, watchd.ErrNoWatcher) {
		t.Errorf("offer after the watcher ended: %v, want ErrNoWatcher", err)
	}
	if fi, err := os.Stat(p.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the watcher directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
}

// A second watcher of the same place (two `run -d` that both found no
// watcher listening yet) hands its run to the first and ends at once.
func TestSecondWatcherJoinsTheFirst(t *testing.T) {
	e := newWatchEnv(t)
	e.creating("first-0000000a")
	e.creating("second-0000000b")
	p := e.place()
	first := e.watch("first-0000000a")
	e.waitListening(p)
	select {
	case err := <-e.watch("second-0000000b"):
		if err != nil {
			t.Fatalf("second watch: %v\n%s", err, e.errOut)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the second watcher did not hand its run over\n%s", e.errOut)
	}
	if !strings.Contains(e.errOut.String(), "Run second-0000000b is supervised by the shared watcher") {
		t.Errorf("the second watcher does not say where its run went:\n%s", e.errOut)
	}
	e.finish("first-0000000a")
	select {
	case err := <-first:
		t.Fatalf("the watcher ended (%v) while it still had second's run", err)
	case <-time.After(time.Second):
	}
	e.finish("second-0000000b")
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if log := e.watchLog("second-0000000b"); !strings.Contains(log, "Run second-0000000b failed\n") {
		t.Errorf("second's watch.log:\n%s", log)
	}
}

// The key changes with what changes how a run is supervised, and not
// with the shell's bookkeeping.
func TestWatcherPlaceKey(t *testing.T) {
	e := newWatchEnv(t)
	key := func(engine string, env ...string) string {
		f := e.factory()
		base := f.Environ()
		f.Environ = func() []string { return append(append([]string{}, base...), env...) }
		f.EngineKind = engine
		p, err := f.watcherPlace(e.st)
		if err != nil {
			t.Fatal(err)
		}
		return p.Key
	}
	base := key("docker")
	if k := key("docker", "PWD=/elsewhere", "OLDPWD=/x", "SHLVL=3", "_=/usr/bin/env"); k != base {
		t.Errorf("the shell's own variables changed the key")
	}
	for name, k := range map[string]string{
		"another engine":    key("podman"),
		"another variable":  key("docker", "GIT_DIR=/x"),
		"another proxy env": key("docker", "HTTPS_PROXY=http://127.0.0.1:1"),
	} {
		if k == base {
			t.Errorf("%s: same key", name)
		}
	}
}

// listening reports whether the place's socket takes a connection.
func listening(p watchd.Place) bool {
	d, err := os.Open(p.Dir)
	if err != nil {
		return false
	}
	defer d.Close()
	// Through the directory's descriptor, as rawOffer: a temporary
	// directory's path can be past a socket address's length.
	c, err := net.Dial("unix", "/proc/self/fd/"+strconv.Itoa(int(d.Fd()))+"/"+p.Key+".sock")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func rawOffer(t *testing.T, p watchd.Place, msg string) string {
	t.Helper()
	d, err := os.Open(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := net.Dial("unix", "/proc/self/fd/"+strconv.Itoa(int(d.Fd()))+"/"+p.Key+".sock")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go io.WriteString(c, msg)
	b, _ := io.ReadAll(io.LimitReader(c, 1024))
	return string(b)
}
