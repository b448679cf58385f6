package testkit

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// Docker connects a test to the real engine at DOCKER_HOST or the default
// socket. Without one the test is skipped, except under CI=true, where a
// missing engine is a failure: CI must run every test.
func Docker(t testing.TB) *sandbox.Docker {
	t.Helper()
	d, err := sandbox.NewDocker()
	if err != nil {
		t.Fatalf("NewDocker: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Ping(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs a Docker engine: %v", err)
		}
		t.Skipf("no Docker engine: %v", err)
	}
	return d
}

// Podman connects a test to the Podman API service of the user the test
// runs as (rootful for root, rootless otherwise; CONTAINER_HOST overrides),
// skipping or, under CI=true, failing when none answers.
func Podman(t testing.TB) *sandbox.Docker {
	t.Helper()
	p, err := sandbox.NewPodman("")
	if err != nil {
		t.Fatalf("NewPodman: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs Podman (scripts/setup.sh starts it): %v", err)
		}
		t.Skipf("no Podman: %v", err)
	}
	return p
}

// RootlessUser is the non-root user whose rootless Podman the tests use:
// AIRLOCK_TEST_USER, or airlock-test, which scripts/setup.sh creates.
func RootlessUser() string {
	if u := os.Getenv("AIRLOCK_TEST_USER"); u != "" {
		return u
	}
	return "airlock-test"
}

// IncusSocket is the Unix socket of the tests' incusd: INCUS_SOCKET, else
// Incus' own default.
func IncusSocket() string {
	if s := os.Getenv("INCUS_SOCKET"); s != "" {
		return s
	}
	return "/var/lib/incus/unix.socket"
}

// Incus connects a test to incusd at INCUS_SOCKET or its default socket,
// skipping or, under CI=true, failing when it does not answer.
func Incus(t testing.TB) *sandbox.Incus {
	t.Helper()
	inc, err := sandbox.NewIncus("unix://" + IncusSocket())
	if err != nil {
		t.Fatalf("NewIncus: %v", err)
	}
	t.Cleanup(func() { inc.Close() })
	// A missing Incus fails at once (no socket); a busy one (deleting
	// btrfs snapshots under a loaded machine) may take long to answer.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := inc.Ping(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs Incus (scripts/setup.sh starts it): %v", err)
		}
		t.Skipf("no Incus: %v", err)
	}
	return inc
}
