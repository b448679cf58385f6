package sandbox

import (
	"net"
	"path/filepath"
	"reflect"
	"testing"
)

// Podman's answer is reused for the same socket, and asked again once the
// service has made a new one (a restart) or for another socket.
func TestPodmanInfoCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	sock := filepath.Join(t.TempDir(), "podman.sock")
	listen := func() net.Listener {
		t.Helper()
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ln := listen()
	key := podmanSocketKey("unix://" + sock)
	if key == "" {
		t.Fatal("no key for a live socket")
	}
	if _, ok := readPodmanInfoCache(key); ok {
		t.Fatal("an answer before any was kept")
	}
	var info podmanInfo
	info.Host.CgroupsVersion = "v1"
	info.Host.Security.Rootless = true
	info.Host.OCIRuntime.Name, info.Host.OCIRuntime.Path = "runc", "/usr/bin/runc"
	info.Runtimes = map[string]string{"runc": "/usr/bin/runc", "runsc": "/usr/local/libexec/airlock/runsc"}
	writePodmanInfoCache(key, info)
	if got, ok := readPodmanInfoCache(podmanSocketKey("unix://" + sock)); !ok || !reflect.DeepEqual(got, info) {
		t.Fatalf("kept answer = %+v, %v; want %+v", got, ok, info)
	}

	// An answer kept by an airlock that did not record the runtimes is
	// asked again.
	old := info
	old.Runtimes = nil
	writePodmanInfoCache(key, old)
	if _, ok := readPodmanInfoCache(key); ok {
		t.Error("an answer without the default runtime was used")
	}

	ln.Close() // removes the socket
	ln = listen()
	defer ln.Close()
	if _, ok := readPodmanInfoCache(podmanSocketKey("unix://" + sock)); ok {
		t.Error("the answer of a service that has gone was used for its successor's socket")
	}
	for _, host := range []string{"tcp://127.0.0.1:2375", "unix://" + sock + ".missing", ""} {
		if key := podmanSocketKey(host); key != "" {
			t.Errorf("podmanSocketKey(%q) = %q, want none", host, key)
		}
	}
}
