package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Podman's description of itself (/libpod/info) costs about 0.3 s to ask
// for, as Podman gathers its storage figures for it, and every airlock
// command that creates a container needs it. Its answer (rootless or not,
// the cgroup version) holds as long as the same service listens on the same
// socket, so it is kept in the user's cache directory under the socket's
// identity: a restarted service makes a new socket, and is asked again.
// The cache only saves time: any failure to read or write it is ignored.

// podmanInfoEntry is one cached answer and the socket it came from.
type podmanInfoEntry struct {
	Socket string     `json:"socket"`
	Info   podmanInfo `json:"info"`
}

// podmanSocketKey identifies the socket of a unix:// host (its path, device,
// inode and change time), or "" when there is none to identify.
func podmanSocketKey(host string) string {
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s dev=%d ino=%d ctime=%d.%09d", path, st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
}

// podmanInfoCacheFile is where the answer for a socket key is kept.
func podmanInfoCacheFile(key string) string {
	dir, err := os.UserCacheDir()
	if err != nil || key == "" {
		return ""
	}
	path, _, _ := strings.Cut(key, " ")
	sum := sha256.Sum256([]byte(path))
	return filepath.Join(dir, "airlock", "podman-info-"+hex.EncodeToString(sum[:8])+".json")
}

func readPodmanInfoCache(key string) (podmanInfo, bool) {
	file := podmanInfoCacheFile(key)
	if file == "" {
		return podmanInfo{}, false
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return podmanInfo{}, false
	}
	var e podmanInfoEntry
	// An answer without the runtimes was kept by an older airlock.
	if json.Unmarshal(data, &e) != nil || e.Socket != key || e.Info.Host.OCIRuntime.Name == "" || len(e.Info.Runtimes) == 0 {
		return podmanInfo{}, false
	}
	return e.Info, true
}

func writePodmanInfoCache(key string, info podmanInfo) {
	file := podmanInfoCacheFile(key)
	if file == "" {
		return
	}
	data, err := json.Marshal(podmanInfoEntry{Socket: key, Info: info})
	if err != nil || os.MkdirAll(filepath.Dir(file), 0o700) != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".podman-info-*")
	if err != nil {
		return
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err != nil || cerr != nil || os.Rename(tmp.Name(), file) != nil {
		os.Remove(tmp.Name())
	}
}
