package sandbox_test

import (
	"context"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

func TestIncusPing(t *testing.T) {
	inc := testkit.Incus(t)
	if err := inc.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if inc.Kind() != "incus" {
		t.Errorf("Kind = %q", inc.Kind())
	}
}
