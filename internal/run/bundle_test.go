package run

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox/memengine"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// relayBundles is what the relay in the agent's container does once the
// agent has exited: the harvest script, on the agent's own mounts, for the
// branch its flags name.
func relayBundles(p *memengine.Proc) int {
	i := slices.Index(p.Spec.Cmd, "--bundle-branch")
	if i < 0 || i+1 >= len(p.Spec.Cmd) {
		p.Log("no --bundle-branch in the agent's command")
		return 90
	}
	ws, _, err1 := p.HostPath(containerWorkspace)
	out, _, err2 := p.HostPath(containerOut)
	if err1 != nil || err2 != nil {
		p.Log("the agent's container does not mount its out directory")
		return 91
	}
	script := workspace.HarvestScript(p.Spec.Cmd[i+1])
	if err := asUser(p, ws, []string{"AIRLOCK_WORKSPACE=" + ws, "AIRLOCK_OUT=" + out}, "/bin/sh", "-c", script); err != nil {
		return 92
	}
	return 0
}

func TestHarvestFromTheAgentsContainer(t *testing.T) {
	commit := commitAndExit("hello.txt", "hello\n", 0)
	tests := []struct {
		name    string
		agent   memengine.Program
		stop    bool
		status  store.Status
		harvest bool // whether a harvest container had to bundle the copy
	}{
		{name: "bundled as the agent exits", agent: func(p *memengine.Proc) int {
			if code := commit(p); code != 0 {
				return code
			}
			return relayBundles(p)
		}, status: store.StatusSucceeded},
		{name: "no bundle", agent: commit, status: store.StatusSucceeded, harvest: true},
		{name: "a garbage bundle", agent: func(p *memengine.Proc) int {
			if code := commit(p); code != 0 {
				return code
			}
			p.WriteFile(containerOut+"/"+workspace.BundleFile, []byte("not a bundle"))
			p.WriteFile(containerOut+"/"+workspace.HarvestFile, []byte(`{"head":null,"uncommitted":null,"error":null}`))
			return 0
		}, status: store.StatusSucceeded, harvest: true},
		{name: "stopped by the user after bundling", agent: func(p *memengine.Proc) int {
			if code := commit(p); code != 0 {
				return code
			}
			relayBundles(p)
			return untilKilled(p)
		}, stop: true, status: store.StatusStopped, harvest: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.setAgent(tt.agent)
			var harvests atomic.Int32
			w.mu.Lock()
			w.harvest = func(p *memengine.Proc) int {
				harvests.Add(1)
				return hostShell(p)
			}
			w.mu.Unlock()
			r := w.start(w.request("task"))
			if tt.stop {
				// Until the agent has bundled: then the stop finds a
				// bundle in place, which it must not use.
				out := filepath.Join(w.m.Store.RunDir(r.ID), "out", workspace.HarvestFile)
				for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
					if _, err := os.Stat(out); err == nil {
						break
					} else if time.Now().After(deadline) {
						t.Fatal("the agent never bundled")
					}
				}
				var err error
				if r, err = w.m.Stop(context.Background(), r, time.Second); err != nil {
					t.Fatal(err)
				}
			} else {
				r = w.wait(r)
			}
			if r.Status != tt.status || !r.Harvested || r.HarvestError != "" {
				t.Fatalf("run %s (%s), harvested %v, error %q", r.Status, r.Error, r.Harvested, r.HarvestError)
			}
			if got := strings.TrimSpace(w.git("log", "-1", "--format=%s", r.Branch)); got != "add hello.txt" {
				t.Errorf("branch %s ends in %q, want the agent's commit", r.Branch, got)
			}
			if got := harvests.Load() > 0; got != tt.harvest {
				t.Errorf("harvest container ran: %v, want %v", got, tt.harvest)
			}
			if entries, _ := os.ReadDir(filepath.Join(w.m.Store.RunDir(r.ID), "out")); len(entries) != 0 {
				t.Errorf("the out directory keeps %d entries for a later leg to find", len(entries))
			}
		})
	}
}
