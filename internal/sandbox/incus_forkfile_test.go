package sandbox

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// orphanErr is incusd's answer to a request whose file helper was orphaned.
var orphanErr = errors.New("incus: GET /1.0/instances/x/files?path=%2Fa: dial unix /proc/self/fd/43/forkfile.sock: connect: no such file or directory")

func testGates(t *testing.T, pause time.Duration) (*forkfileGate, *forkfileGate) {
	path := filepath.Join(t.TempDir(), "files.lock")
	// Two gates on one file are as two processes: each lock is its own
	// open file description's.
	return &forkfileGate{path: path, pause: pause}, &forkfileGate{path: path, pause: pause}
}

func TestForkfileGateRetries(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		retry bool
		fails []error // what the sends return, in turn
		want  error
		sends int
	}{
		{"orphaned once", true, []error{orphanErr, nil}, nil, 2},
		{"orphaned every time", true, []error{orphanErr, orphanErr, orphanErr, orphanErr}, orphanErr, forkfileAttempts},
		{"body not to be sent again", false, []error{orphanErr, nil}, orphanErr, 1},
		{"another failure", true, []error{ErrNotFound, nil}, ErrNotFound, 1},
		{"no failure", true, []error{nil}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _ := testGates(t, 10*time.Millisecond)
			sends := 0
			err := g.do(ctx, "inst", tt.retry, func() error {
				sends++
				return tt.fails[sends-1]
			})
			if !errors.Is(err, tt.want) || sends != tt.sends {
				t.Errorf("do = %v after %d sends, want %v after %d", err, sends, tt.want, tt.sends)
			}
		})
	}
}

// While one process pauses for an instance, another's requests for it
// wait, and requests for other instances do not.
func TestForkfileGatePauseHoldsOthers(t *testing.T) {
	ctx := context.Background()
	const pause = 300 * time.Millisecond
	g, other := testGates(t, pause)
	paused := make(chan error, 1)
	began := time.Now()
	go func() { paused <- g.await(ctx, "inst", time.Now()) }()
	time.Sleep(50 * time.Millisecond) // the pause has begun
	var sentAt time.Time
	if err := other.shared(ctx, "elsewhere", func() error { sentAt = time.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	if sentAt.Sub(began) >= pause {
		t.Errorf("a request for another instance waited %s for the pause", sentAt.Sub(began))
	}
	if err := other.shared(ctx, "inst", func() error { sentAt = time.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	if sentAt.Sub(began) < pause {
		t.Errorf("a request for the paused instance was sent %s into a %s pause", sentAt.Sub(began), pause)
	}
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
}

// A pause waits for the requests under way, and one begun after a
// failure serves it: two processes whose requests failed one after the
// other pause once between them.
func TestForkfileGateOnePause(t *testing.T) {
	ctx := context.Background()
	const pause = 300 * time.Millisecond
	g, other := testGates(t, pause)
	inFlight := make(chan struct{})
	release := make(chan struct{})
	otherDone := make(chan error, 1)
	go func() {
		otherDone <- other.shared(ctx, "inst", func() error {
			close(inFlight)
			<-release
			return orphanErr
		})
	}()
	<-inFlight
	failed := time.Now() // g's own request failed while other's was under way
	paused := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		if err := g.await(ctx, "inst", failed); err != nil {
			t.Error(err)
		}
		paused <- time.Since(start)
	}()
	time.Sleep(100 * time.Millisecond)
	otherFailed := time.Now()
	close(release) // other's request fails now, after g's
	if err := <-otherDone; !errors.Is(err, orphanErr) {
		t.Fatal(err)
	}
	if d := <-paused; d < 100*time.Millisecond+pause {
		t.Errorf("the pause took %s, want the request under way and then %s", d, pause)
	}
	start := time.Now()
	if err := other.await(ctx, "inst", otherFailed); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= pause {
		t.Errorf("a second pause of %s for a failure the first pause began after", d)
	}
}
