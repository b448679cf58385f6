package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestHostileWatcherSocketOutOfReach: the socket where detached runs are
// offered to the shared watcher is on the host only. An agent looking for
// it, among every socket it can see and every mount it has, while the
// watcher supervises its run and another, finds neither the socket nor
// the directory that holds it.
func TestHostileWatcherSocketOutOfReach(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.BashScript("seek",
		"find / -type s 2>/dev/null > /workspace/sockets.txt; cat /proc/self/mountinfo > /workspace/mounts.txt; ls -la / /airlock >> /workspace/mounts.txt 2>&1; sleep 6"))
	watchDir := filepath.Join(e.state, "airlock", "watch")
	var ids []string
	for _, name := range []string{"seek-a", "seek-b"} {
		ids = append(ids, strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "Find the watcher.", "--name", name).stdout))
	}
	var socks []string
	for end := time.Now().Add(time.Minute); len(socks) == 0 && time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		socks, _ = filepath.Glob(filepath.Join(watchDir, "*.sock"))
	}
	if len(socks) != 1 {
		t.Fatalf("watcher sockets while two detached runs go on: %v, want 1", socks)
	}
	if fi, err := os.Stat(watchDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("watcher directory: %v, %v; want mode 0700", fi, err)
	}
	key := strings.TrimSuffix(filepath.Base(socks[0]), ".sock")
	for _, id := range ids {
		waitStatus(t, e, id)
		ws := filepath.Join(e.state, "airlock", "runs", id, "workspace")
		seen, err := os.ReadFile(filepath.Join(ws, "sockets.txt"))
		if err != nil {
			t.Fatalf("run %s did not look: %v", id, err)
		}
		mounts, err := os.ReadFile(filepath.Join(ws, "mounts.txt"))
		if err != nil {
			t.Fatalf("run %s did not look: %v", id, err)
		}
		if !strings.Contains(string(seen), "/airlock/sock/") {
			t.Errorf("run %s's search missed even its own proxy socket:\n%s", id, seen)
		}
		if strings.Contains(string(seen), key) || strings.Contains(string(mounts), key) {
			t.Errorf("run %s sees the watcher's socket:\n%s", id, seen)
		}
		for _, line := range strings.Split(string(mounts), "\n") {
			if strings.Contains(line, watchDir) || strings.Contains(line, " "+filepath.Join(e.state, "airlock")+" ") {
				t.Errorf("run %s has the watcher's directory mounted: %s", id, line)
			}
		}
	}
}
