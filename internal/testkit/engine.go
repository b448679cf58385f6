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
