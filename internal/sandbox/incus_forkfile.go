package sandbox

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Incus (before 7.3) serves an instance's files through a helper process,
// forkfile, that it spawns on demand and that exits after 15 s without a
// request. When a helper exits, incusd removes its socket by path; if a
// request has meanwhile put the socket of a new helper there, that socket
// is what goes (fixed upstream by lxc/incus 3e060957ae, "Fix race between
// forkfile cleanup and respawn"). The request fails with "dial unix
// …/forkfile.sock: connect: no such file or directory", and the helper it
// spawned lives on, unreachable, until it idles out 15 s later, taking with
// it the socket of whichever request is waiting for it by then. So once it
// has happened, every request for the instance's files fails, each after
// 15 s, for as long as requests keep coming, and a Wait polls. Seen in CI:
// `airlock stop` failed after 30 s of them (the instance stopped while its
// exit record was being read, which is when incusd ends the helper).
//
// Only a pause in which nobody asks for the instance's files until the
// orphaned helper has gone ends it. Every airlock process on this machine
// keeps the pause: each request holds a shared lock on the instance's slot
// of one lock file, and a request that meets the failure takes it
// exclusively for forkfileOrphanLife, then asks again.

// forkfileOrphanLife bounds how long an unreachable helper lives: forkfile
// exits once it has seen no request for 10 s and then 5 s more.
const forkfileOrphanLife = 20 * time.Second

// forkfileAttempts bounds the requests one call makes.
const forkfileAttempts = 3

// forkfileGate orders the requests of all airlock processes for Incus
// instances' files around the pauses that end an orphaned helper.
type forkfileGate struct {
	path  string        // the lock file, shared by every airlock process
	pause time.Duration // forkfileOrphanLife
}

func newForkfileGate() *forkfileGate {
	return &forkfileGate{path: filepath.Join(os.TempDir(), "airlock-incus-files.lock"), pause: forkfileOrphanLife}
}

// forkfileOrphaned reports the failure that leaves an orphaned helper.
func forkfileOrphaned(err error) bool {
	return err != nil && strings.Contains(err.Error(), "forkfile.sock: connect: no such file or directory")
}

// do sends a request for the files of instance name. A request that
// leaves an orphaned helper is, when retry allows, sent again after a
// pause that outlives the helper.
func (g *forkfileGate) do(ctx context.Context, name string, retry bool, send func() error) error {
	for attempt := 1; ; attempt++ {
		err := g.shared(ctx, name, send)
		if !forkfileOrphaned(err) || ctx.Err() != nil {
			return err
		}
		if perr := g.await(ctx, name, time.Now()); perr != nil || !retry || attempt == forkfileAttempts {
			return err
		}
	}
}

// The lock file holds, for each of forkfileSlots slots (an instance hashes
// to one), 8 bytes: when the last pause for it began (Unix nanoseconds).
// Requests hold a shared lock on the slot's byte 1 while they are sent; a
// pause holds it exclusively. Byte 0 is the pause's notice: taking it
// first keeps new requests from slipping in while the pause waits for
// those under way (open file description locks, so that goroutines of one
// process exclude each other too).
const forkfileSlots = 4096

func forkfileSlot(name string) int64 {
	h := fnv.New32a()
	io.WriteString(h, name)
	return int64(h.Sum32()%forkfileSlots) * 8
}

// shared sends a request holding the slot's shared lock.
func (g *forkfileGate) shared(ctx context.Context, name string, send func() error) error {
	f, err := g.open()
	if err != nil {
		// No lock file this process may write (another user's): this
		// process's own requests still keep the pauses it takes.
		return send()
	}
	defer f.Close()
	slot := forkfileSlot(name)
	if err := lockRange(ctx, f, unix.F_RDLCK, slot, 1); err != nil {
		return err
	}
	if err := lockRange(ctx, f, unix.F_RDLCK, slot+1, 1); err != nil {
		return err
	}
	unlockRange(f, slot, 1)
	defer unlockRange(f, slot+1, 1)
	return send()
}

// await returns once no helper orphaned by a request that failed at
// failed can be alive: after a pause begun since, its own or another's.
func (g *forkfileGate) await(ctx context.Context, name string, failed time.Time) error {
	f, err := g.open()
	if err != nil {
		return sleepCtx(ctx, g.pause)
	}
	defer f.Close()
	slot := forkfileSlot(name)
	if err := lockRange(ctx, f, unix.F_WRLCK, slot, 1); err != nil {
		return err
	}
	defer unlockRange(f, slot, 1)
	if err := lockRange(ctx, f, unix.F_WRLCK, slot+1, 1); err != nil {
		return err
	}
	defer unlockRange(f, slot+1, 1)
	// Every request under way when the lock was granted has ended, so
	// every helper orphaned so far began before now.
	var stamp [8]byte
	if n, _ := f.ReadAt(stamp[:], slot); n == len(stamp) {
		if last := int64(binary.LittleEndian.Uint64(stamp[:])); last >= failed.UnixNano() {
			return nil // a pause begun after the failure has outlived its helper
		}
	}
	binary.LittleEndian.PutUint64(stamp[:], uint64(time.Now().UnixNano()))
	if _, err := f.WriteAt(stamp[:], slot); err != nil {
		return err
	}
	return sleepCtx(ctx, g.pause)
}

func (g *forkfileGate) open() (*os.File, error) {
	return os.OpenFile(g.path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
}

// lockRange takes an open file description lock of kind typ on n bytes at
// off, waiting for it as long as ctx lasts.
func lockRange(ctx context.Context, f *os.File, typ int16, off, n int64) error {
	lk := unix.Flock_t{Type: typ, Whence: io.SeekStart, Start: off, Len: n}
	for {
		err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EINTR) {
			return err
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

func unlockRange(f *os.File, off, n int64) {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: io.SeekStart, Start: off, Len: n}
	unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
