// Package watchd lets one detached watcher process supervise many runs.
//
// The first `airlock watcher` claims a place (a Unix socket and a lock file
// in a directory only the user can reach) and listens there; a later `run
// -d` offers its run ID to that socket instead of starting a process of its
// own. The watcher answers only once it has taken the run on, so a run is
// never left between two supervisors: whatever goes wrong (no answer in
// time, a refusal, no socket, a stale one), the offering side starts its own
// watcher exactly as if no shared one existed.
//
// The lock settles who listens: only its holder creates or removes the
// socket, so a live socket is never removed by a newcomer, and a socket left
// by a watcher that died is removed by the next one. A watcher with no runs
// left stops listening (and removes the socket) under the same mutex that
// takes runs on, so an offer either lands before that and is supervised, or
// after it and is refused.
package watchd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxMessage is the longest request line accepted, newline included: a
// run ID and a verb. Anything longer is refused unread.
const MaxMessage = 256

// answerWithin is how long either side waits for the other's line.
const answerWithin = 2 * time.Second

// ErrBusy is returned by Claim when another watcher holds the place.
var ErrBusy = errors.New("another watcher holds this place")

// ErrNoWatcher is returned by Offer when no watcher took the run.
var ErrNoWatcher = errors.New("no shared watcher took the run")

// Place is where watchers of one identity meet: Dir/Key.sock and
// Dir/Key.lock. Watchers that would supervise a run differently (another
// binary, store, environment or engine) have different keys.
type Place struct {
	Dir string
	Key string
}

func (p Place) socket() string { return filepath.Join(p.Dir, p.Key+".sock") }
func (p Place) lock() string   { return filepath.Join(p.Dir, p.Key+".lock") }

// PrivateDir makes dir (and checks an existing one): a real directory,
// not a link, owned by this user and closed to everyone else. Anyone who
// can reach the socket can have runs supervised, so nobody else may.
func PrivateDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("watcher directory %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("watcher directory %s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("watcher directory %s is not a directory", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("watcher directory %s is not owned by this user", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("watcher directory %s is open to others (mode %v)", dir, fi.Mode().Perm())
	}
	return nil
}

// ValidKey reports whether key is usable as a file name in Dir: what
// Place's callers make, hex digits.
func ValidKey(key string) bool {
	if key == "" || len(key) > 64 {
		return false
	}
	for _, c := range key {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// shortPath is a path to name in dir no longer than a Unix socket address
// allows (107 bytes): through a descriptor of the directory, however deep
// it is. The caller closes the returned directory after use.
func shortPath(dir, name string) (string, *os.File, error) {
	d, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), name), d, nil
}

// Server is a claimed place, listening for offers of runs.
type Server struct {
	place Place
	lockf *os.File
	ln    *net.UnixListener

	mu      sync.Mutex
	closing bool
	// active holds the runs being supervised, and for each whether it was
	// offered again while supervised (then it is looked at once more).
	active map[string]bool
	runs   sync.WaitGroup
}

// Claim takes the place's lock and listens on its socket, replacing a
// socket left behind by a watcher that is gone. ErrBusy: another watcher
// holds it (it listens, is about to, or is closing down).
func Claim(p Place) (*Server, error) {
	if !ValidKey(p.Key) {
		return nil, fmt.Errorf("watcher key %q is not valid", p.Key)
	}
	lockf, err := os.OpenFile(p.lock(), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("watcher lock: %w", err)
	}
	if err := unix.Flock(int(lockf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lockf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("watcher lock: %w", err)
	}
	// Held: any socket there is a dead watcher's.
	if err := os.Remove(p.socket()); err != nil && !errors.Is(err, os.ErrNotExist) {
		lockf.Close()
		return nil, fmt.Errorf("remove stale watcher socket: %w", err)
	}
	path, dir, err := shortPath(p.Dir, p.Key+".sock")
	if err != nil {
		lockf.Close()
		return nil, fmt.Errorf("watcher socket: %w", err)
	}
	defer dir.Close()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		lockf.Close()
		return nil, fmt.Errorf("watcher socket: %w", err)
	}
	// The short path is gone with the directory's descriptor: the socket
	// is removed by its full path, when the server closes.
	ln.SetUnlinkOnClose(false)
	return &Server{place: p, lockf: lockf, ln: ln, active: map[string]bool{}}, nil
}

// Handler is what a server does with runs: Check refuses an offered ID
// (it must name a run the watcher may supervise); Supervise supervises
// one until it is done.
type Handler struct {
	Check     func(id string) error
	Supervise func(id string)
	// Log receives the server's own messages (refused offers), for people.
	Log func(format string, args ...any)
}

// Serve supervises first (the watcher's own runs) and every run offered
// and taken on, each in its own goroutine, and returns once none is left:
// by then the socket is removed and the lock released. The own runs are
// checked like offered ones; Serve returns the error of the first that
// fails its check.
func (s *Server) Serve(h Handler, first ...string) error {
	var firstErr error
	for _, id := range first {
		if err := s.take(h, id); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	s.mu.Lock()
	if len(s.active) == 0 {
		s.closeLocked()
	}
	s.mu.Unlock()

	var conns sync.WaitGroup
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				break
			}
			// Out of descriptors and the like: try again shortly rather
			// than leave the runs without their watcher.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			s.answer(h, c)
		}()
	}
	conns.Wait()
	s.runs.Wait()
	s.lockf.Close() // releases the lock, after the socket is gone
	return firstErr
}

// Close stops listening and waits for nothing: for a server whose Serve
// never ran.
func (s *Server) Close() {
	s.mu.Lock()
	s.closeLocked()
	s.mu.Unlock()
	s.lockf.Close()
}

// closeLocked stops taking runs on: no new connection, no socket.
// Connections accepted before are refused by answer.
func (s *Server) closeLocked() {
	if s.closing {
		return
	}
	s.closing = true
	s.ln.Close()
	os.Remove(s.place.socket())
}

// take checks id and, unless the server is closing, starts supervising
// it; supervised already, it is looked at once more when its current
// supervision ends (a restarted run, offered again).
func (s *Server) take(h Handler, id string) error {
	if err := h.Check(id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errClosing
	}
	if _, ok := s.active[id]; ok {
		s.active[id] = true
		return nil
	}
	s.active[id] = false
	s.runs.Add(1)
	go s.supervise(h, id)
	return nil
}

func (s *Server) supervise(h Handler, id string) {
	defer s.runs.Done()
	for {
		h.Supervise(id)
		s.mu.Lock()
		if s.active[id] {
			s.active[id] = false
			s.mu.Unlock()
			continue
		}
		delete(s.active, id)
		if len(s.active) == 0 {
			s.closeLocked()
		}
		s.mu.Unlock()
		return
	}
}

var errClosing = errors.New("closing")

// answer reads one offer and answers it. Nothing read is trusted: the
// peer must be this user, the line short, and the ID must pass Check
// before anything happens.
func (s *Server) answer(h Handler, c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(answerWithin))
	reply := func(format string, args ...any) { fmt.Fprintf(c, format+"\n", args...) }
	if err := samePeer(c); err != nil {
		h.logf("refused an offer: %v", err)
		reply("no %s", err)
		return
	}
	line, err := bufio.NewReaderSize(&limited{c, MaxMessage}, MaxMessage).ReadSlice('\n')
	if err != nil {
		h.logf("refused an offer: no request line of at most %d bytes", MaxMessage)
		reply("no the request is not one line of at most %d bytes", MaxMessage)
		return
	}
	verb, id, ok := strings.Cut(strings.TrimSuffix(string(line), "\n"), " ")
	if !ok || verb != "run" {
		h.logf("refused an offer: not a run request")
		reply("no not a run request")
		return
	}
	switch err := s.take(h, id); {
	case errors.Is(err, errClosing):
		reply("closing")
	case err != nil:
		h.logf("refused run %q: %v", id, err)
		reply("no %s", oneLine(err.Error()))
	default:
		reply("ok %d", os.Getpid())
	}
}

func (h Handler) logf(format string, args ...any) {
	if h.Log != nil {
		h.Log(format, args...)
	}
}

// samePeer checks the other end of c runs as this user: the directory
// already keeps others out, and this does not rely on it alone.
func samePeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	if int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("the peer runs as uid %d", cred.Uid)
	}
	return nil
}

// limited reads at most n bytes in all: an over-long line ends in EOF.
type limited struct {
	c net.Conn
	n int
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("too long")
	}
	if len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= n
	return n, err
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// Offered is a watcher's answer that it took a run on.
type Offered struct{ PID int }

// Offer offers run id to the place's watcher, within patience: it
// returns once a watcher took the run on, or refused it, or (ErrNoWatcher)
// when no watcher holds the place or none answered in time. A watcher that
// is starting (it holds the lock but does not listen yet) or closing down
// is waited for.
func Offer(ctx context.Context, p Place, id string, patience time.Duration) (Offered, error) {
	if !ValidKey(p.Key) {
		return Offered{}, fmt.Errorf("watcher key %q is not valid", p.Key)
	}
	deadline := time.Now().Add(patience)
	for {
		o, err := offerOnce(ctx, p, id, deadline)
		switch {
		case err == nil:
			return o, nil
		case errors.Is(err, ErrRefused):
			return Offered{}, err
		}
		if !held(p) || time.Now().After(deadline) {
			return Offered{}, fmt.Errorf("%w: %v", ErrNoWatcher, err)
		}
		select {
		case <-ctx.Done():
			return Offered{}, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// ErrRefused is returned (wrapped) by Offer when the watcher refused the
// run: it failed the watcher's check.
var ErrRefused = errors.New("the watcher refused the run")

// OfferOnce is one offer: one connection, one answer.
func OfferOnce(ctx context.Context, p Place, id string) (Offered, error) {
	if !ValidKey(p.Key) {
		return Offered{}, fmt.Errorf("watcher key %q is not valid", p.Key)
	}
	return offerOnce(ctx, p, id, time.Now().Add(answerWithin))
}

func offerOnce(ctx context.Context, p Place, id string, deadline time.Time) (Offered, error) {
	path, dir, err := shortPath(p.Dir, p.Key+".sock")
	if err != nil {
		return Offered{}, err
	}
	defer dir.Close()
	if d := time.Now().Add(answerWithin); d.After(deadline) {
		deadline = d
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "unix", path)
	if err != nil {
		return Offered{}, err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := fmt.Fprintf(c, "run %s\n", id); err != nil {
		return Offered{}, err
	}
	line, err := bufio.NewReader(&limited{c, MaxMessage}).ReadString('\n')
	if err != nil {
		return Offered{}, fmt.Errorf("no answer: %w", err)
	}
	verb, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
	switch verb {
	case "ok":
		pid, err := strconv.Atoi(rest)
		if err != nil {
			return Offered{}, fmt.Errorf("answer %q: %w", oneLine(line), err)
		}
		return Offered{PID: pid}, nil
	case "closing":
		return Offered{}, errClosing
	case "no":
		return Offered{}, fmt.Errorf("%w: %s", ErrRefused, oneLine(rest))
	}
	return Offered{}, fmt.Errorf("answer %q is not one", oneLine(line))
}

// held reports whether a watcher holds the place's lock: one is serving,
// starting to or closing down.
func held(p Place) bool {
	f, err := os.OpenFile(p.lock(), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
