package watchd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// place is a fresh place in a private directory deeper than a Unix
// socket's address may be long, so the short path is always in use.
func place(t *testing.T) Place {
	t.Helper()
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	return Place{Dir: dir, Key: "0123456789abcdef"}
}

// runs is a handler whose runs last until released, and which records
// what it was asked to do.
type runs struct {
	mu         sync.Mutex
	known      map[string]bool
	supervised map[string]int
	release    map[string]chan struct{}
	// ended is set once Serve has returned: a run supervised after that,
	// or still supervised then (late), had no watcher for a while.
	ended, late bool
	inFlight    int
	// slow is how long a check takes: offers then straddle the end.
	slow time.Duration
}

func newRuns(ids ...string) *runs {
	r := &runs{known: map[string]bool{}, supervised: map[string]int{}, release: map[string]chan struct{}{}}
	for _, id := range ids {
		r.known[id] = true
		r.release[id] = make(chan struct{})
	}
	return r
}

func (r *runs) handler() Handler {
	return Handler{
		Check: func(id string) error {
			time.Sleep(r.slow)
			r.mu.Lock()
			defer r.mu.Unlock()
			if !r.known[id] {
				return fmt.Errorf("no such run: %s", id)
			}
			return nil
		},
		Supervise: func(id string) {
			r.mu.Lock()
			r.supervised[id]++
			r.late = r.late || r.ended
			r.inFlight++
			ch := r.release[id]
			r.mu.Unlock()
			<-ch
			time.Sleep(time.Millisecond)
			r.mu.Lock()
			r.inFlight--
			r.mu.Unlock()
		},
	}
}

func (r *runs) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.supervised[id]
}

func serve(t *testing.T, p Place, r *runs, first ...string) <-chan error {
	t.Helper()
	srv, err := Claim(p)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(r.handler(), first...)
		r.mu.Lock()
		r.ended = true
		r.late = r.late || r.inFlight > 0
		r.mu.Unlock()
		done <- err
	}()
	return done
}

func waitDone(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return once its runs ended")
	}
}

// One watcher per place: a second claim is refused while the first
// serves, and succeeds once it is done; a run offered to the first is
// supervised by it, and the place is free when its runs have ended.
func TestOneWatcherPerPlace(t *testing.T) {
	p := place(t)
	r := newRuns("a", "b")
	done := serve(t, p, r, "a")
	if _, err := Claim(p); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Claim: %v, want ErrBusy", err)
	}
	o, err := Offer(context.Background(), p, "b", time.Second)
	if err != nil {
		t.Fatalf("Offer: %v", err)
	}
	if o.PID != os.Getpid() {
		t.Errorf("taken by process %d, want %d", o.PID, os.Getpid())
	}
	if n := r.count("b"); n != 1 {
		t.Errorf("b supervised %d times when the offer was answered, want 1", n)
	}
	close(r.release["a"])
	close(r.release["b"])
	waitDone(t, done)
	if _, err := os.Stat(p.socket()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if _, err := Offer(context.Background(), p, "b", time.Second); !errors.Is(err, ErrNoWatcher) {
		t.Errorf("Offer after the end: %v, want ErrNoWatcher", err)
	}
	srv, err := Claim(p)
	if err != nil {
		t.Fatalf("Claim after the end: %v", err)
	}
	srv.Close()
}

// A run offered again while supervised (restarted) is supervised once
// more after its current supervision ends, never twice at once.
func TestOfferedAgainIsLookedAtAgain(t *testing.T) {
	p := place(t)
	r := newRuns("a")
	done := serve(t, p, r, "a")
	if _, err := Offer(context.Background(), p, "a", time.Second); err != nil {
		t.Fatal(err)
	}
	if n := r.count("a"); n != 1 {
		t.Fatalf("supervised %d times at once, want 1", n)
	}
	r.mu.Lock()
	first := r.release["a"]
	r.release["a"] = make(chan struct{})
	r.mu.Unlock()
	close(first)
	for end := time.Now().Add(5 * time.Second); r.count("a") < 2 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := r.count("a"); n != 2 {
		t.Fatalf("supervised %d times, want 2", n)
	}
	close(r.release["a"])
	waitDone(t, done)
}

// No run is ever left without a watcher: offers racing the end of the
// watcher's last run are each either taken (and then supervised to their
// end before the watcher exits) or answered so that the offering side
// starts a watcher of its own (ErrNoWatcher).
func TestOffersRacingTheEnd(t *testing.T) {
	for round := range 30 {
		p := place(t)
		ids := []string{"first"}
		for i := range 8 {
			ids = append(ids, fmt.Sprintf("r%d", i))
		}
		r := newRuns(ids...)
		r.slow = time.Duration(round%4) * time.Millisecond
		for _, id := range ids[1:] {
			close(r.release[id]) // offered runs end at once
		}
		done := serve(t, p, r, "first")
		results := make([]error, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%2 == 0 {
					time.Sleep(time.Duration(round%5) * time.Millisecond)
				}
				_, results[i+1] = Offer(context.Background(), p, id, 2*time.Second)
			}()
		}
		time.Sleep(time.Duration(round%7) * time.Millisecond)
		close(r.release["first"])
		wg.Wait()
		waitDone(t, done)
		time.Sleep(10 * time.Millisecond)
		r.mu.Lock()
		late := r.late
		r.mu.Unlock()
		if late {
			t.Fatalf("round %d: a run was supervised after its watcher ended, or still supervised as it did", round)
		}
		for i, id := range ids[1:] {
			err := results[i+1]
			switch n := r.count(id); {
			case err == nil && n == 0:
				t.Fatalf("round %d: %s was taken but never supervised", round, id)
			case err != nil && !errors.Is(err, ErrNoWatcher):
				t.Fatalf("round %d: %s: %v, want taken or ErrNoWatcher", round, id, err)
			case err != nil && n != 0:
				t.Fatalf("round %d: %s was refused (%v) and supervised all the same", round, id, err)
			}
		}
	}
}

// Two watchers starting together: exactly one claims the place.
func TestClaimRace(t *testing.T) {
	p := place(t)
	var wg sync.WaitGroup
	srvs := make([]*Server, 8)
	errs := make([]error, 8)
	for i := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srvs[i], errs[i] = Claim(p)
		}()
	}
	wg.Wait()
	claimed := 0
	for i, err := range errs {
		switch {
		case err == nil:
			claimed++
			defer srvs[i].Close()
		case !errors.Is(err, ErrBusy):
			t.Errorf("Claim: %v", err)
		}
	}
	if claimed != 1 {
		t.Fatalf("%d watchers claimed the place, want 1", claimed)
	}
}

// A socket left by a watcher that died (it holds no lock) is not waited
// for, and the next watcher replaces it.
func TestStaleSocket(t *testing.T) {
	p := place(t)
	path, dir, err := shortPath(p.Dir, p.Key+".sock")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	dir.Close()
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	start := time.Now()
	if _, err := Offer(context.Background(), p, "a", 5*time.Second); !errors.Is(err, ErrNoWatcher) {
		t.Fatalf("Offer to a stale socket: %v, want ErrNoWatcher", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Offer waited %s for a dead watcher", d)
	}
	r := newRuns("a")
	close(r.release["a"])
	done := serve(t, p, r, "a")
	waitDone(t, done)
	if r.count("a") != 1 {
		t.Errorf("the new watcher did not supervise its run")
	}
}

// Whatever arrives on the socket that is not a well-formed offer of a
// run the handler accepts is refused, and nothing is supervised.
func TestGarbageRefused(t *testing.T) {
	p := place(t)
	r := newRuns("a")
	done := serve(t, p, r, "a")
	for _, msg := range []string{
		"",
		"\n",
		"hello\n",
		"run\n",
		"run nosuch\n",
		"run a\x00b\n",
		"RUN a\n",
		"run " + strings.Repeat("a", MaxMessage) + "\n",
		strings.Repeat("x", 1<<20),
	} {
		answer := raw(t, p, msg)
		if !strings.HasPrefix(answer, "no ") {
			t.Errorf("%.40q: answer %q, want a refusal", msg, answer)
		}
	}
	if _, err := Offer(context.Background(), p, "nosuch", time.Second); !errors.Is(err, ErrRefused) {
		t.Errorf("unknown run: %v, want ErrRefused", err)
	}
	r.mu.Lock()
	if len(r.supervised) != 1 || r.supervised["a"] != 1 {
		t.Errorf("supervised %v, want only a, once", r.supervised)
	}
	r.mu.Unlock()
	close(r.release["a"])
	waitDone(t, done)
}

// raw sends msg on a connection of its own and returns the answer line.
func raw(t *testing.T, p Place, msg string) string {
	t.Helper()
	path, dir, err := shortPath(p.Dir, p.Key+".sock")
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		io.WriteString(c, msg)
		if msg == "" || !strings.HasSuffix(msg, "\n") {
			c.(*net.UnixConn).CloseWrite()
		}
	}()
	b, _ := io.ReadAll(io.LimitReader(c, 1024))
	return string(b)
}

// The directory must be private: not a link, not open to others.
func TestPrivateDir(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(open); err == nil || !strings.Contains(err.Error(), "open to others") {
		t.Errorf("mode 0755: %v", err)
	}
	private := filepath.Join(base, "private")
	if err := PrivateDir(private); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("link: %v", err)
	}
	if _, err := Claim(Place{Dir: private, Key: "../x"}); err == nil {
		t.Error("Claim took a key that is a path")
	}
}
