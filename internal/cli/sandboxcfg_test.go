package cli

import (
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// ls's PORTS column shows a run's forwarded ports while it runs only: they
// close with it. No run with open ports, no column.
func TestOpenPorts(t *testing.T) {
	running := &store.Run{Status: store.StatusRunning, Ports: []string{"127.0.0.1:8080->3000", "127.0.0.1:9000->9000"}}
	done := &store.Run{Status: store.StatusSucceeded, Ports: []string{"127.0.0.1:8081->3000"}}
	if got := openPorts(running); got != "127.0.0.1:8080->3000, 127.0.0.1:9000->9000" {
		t.Errorf("running: %q", got)
	}
	if got := openPorts(done); got != "" {
		t.Errorf("finished: %q", got)
	}
	if !anyPorts([]*store.Run{done, running}) || anyPorts([]*store.Run{done, {Status: store.StatusRunning}}) {
		t.Error("anyPorts decides the column wrongly")
	}
}

func TestDescribeMountsAndPorts(t *testing.T) {
	got := describeMounts([]sandbox.Mount{{Source: "/home/u/d", Target: "/data", ReadOnly: true}, {Source: "/srv/x", Target: "/x"}})
	for _, want := range []string{"mount  /data", "/home/u/d (read-only)", "/srv/x (read-write)"} {
		if !strings.Contains(got, want) {
			t.Errorf("describeMounts lacks %q:\n%s", want, got)
		}
	}
	if _, err := parsePorts([]string{"3000", "0.0.0.0:1:2"}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("parsePorts: %v", err)
	}
}
