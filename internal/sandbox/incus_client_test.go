package sandbox

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestIncusClientUnreachable(t *testing.T) {
	inc, err := NewIncus("unix:///nonexistent/incus.socket")
	if err != nil {
		t.Fatal(err)
	}
	err = inc.Ping(context.Background())
	if !errors.Is(err, ErrEngineUnreachable) {
		t.Fatalf("Ping: err = %v, want ErrEngineUnreachable", err)
	}
	for _, hint := range []string{"incusd", "/nonexistent/incus.socket"} {
		if !strings.Contains(err.Error(), hint) {
			t.Errorf("error %q does not tell the user %q", err, hint)
		}
	}
}

func TestNewIncusHost(t *testing.T) {
	for host, ok := range map[string]bool{
		"": true, "unix:///run/incus/unix.socket": true,
		"https://example:8443": false, "unix://relative": false,
	} {
		_, err := NewIncus(host)
		if (err == nil) != ok {
			t.Errorf("NewIncus(%q): err = %v, want ok=%v", host, err, ok)
		}
	}
}
