package sandbox

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// Creates in rootless Podman's keep-id user namespace take turns across
// airlock's processes (each lockSubids opens the lock anew, as another
// process would); a wait for the turn ends with its context.
func TestLockSubids(t *testing.T) {
	host := "unix://" + filepath.Join(t.TempDir(), "podman.sock")
	ctx := context.Background()
	unlock, err := lockSubids(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		second, err := lockSubids(ctx, host)
		if err != nil {
			t.Error(err)
		}
		got <- second
	}()
	select {
	case <-got:
		t.Fatal("a second create went ahead while the first held the lock")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case second := <-got:
		second()
	case <-time.After(5 * time.Second):
		t.Fatal("the second create still waits after the first let go")
	}

	unlock, _ = lockSubids(ctx, host)
	defer unlock()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := lockSubids(short, host); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past the deadline = %v, want the deadline's error", err)
	}
	// Not a local socket: nothing to lock beside.
	if release, err := lockSubids(ctx, "tcp://127.0.0.1:1"); err != nil {
		t.Error(err)
	} else {
		release()
	}
}
