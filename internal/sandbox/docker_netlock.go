package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Docker 20.10's libnetwork deadlocks, and the daemon stops answering for
// good, when endpoints of one user-defined network are created and deleted
// concurrently (endpoint.Delete holds the network while it waits for the
// service-record watch loop, which waits for the network). Ten runs ending
// at once were enough. So every change to a proxy's network attachment —
// creating or removing a proxy container, creating or pruning the egress
// network — takes one lock shared by every airlock process on the machine.
// Containers with network "none" need no lock.

// netLockPath is machine-wide (not per state directory) on purpose: the
// daemon is shared by every user and state directory.
func netLockPath() string { return filepath.Join(os.TempDir(), "airlock-network.lock") }

// withNetLock runs fn holding the machine-wide network lock.
func withNetLock(ctx context.Context, fn func() error) error {
	return withMachineLock(ctx, netLockPath(), fn)
}

// withMachineLock runs fn holding an exclusive lock on the file at path.
func withMachineLock(ctx context.Context, path string, fn func() error) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer f.Close()
	if err := flockWait(ctx, int(f.Fd())); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

// flockWait takes an exclusive lock on fd, waiting for it as long as ctx
// lasts (a blocking flock could not be given up).
func flockWait(ctx context.Context, fd int) error {
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// removeNetworked removes a container that is attached to a network: it is
// stopped first, so the daemon has released its endpoint before the lock
// is let go, then removed. A missing container is not an error.
func (d *Docker) removeNetworked(ctx context.Context, name string) error {
	return withNetLock(ctx, func() error {
		if err := d.Stop(ctx, name, 2*time.Second); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		return d.remove(ctx, name)
	})
}
