package sandbox

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A pod's containers each have their own process namespace (a shared one
// would let the agent see, signal and trace the keeper that copies its
// files out, and the relay's clean-up would kill it), so nothing but the
// command would be PID 1 of the agent's container: no init to reap orphans,
// and a PID 1 that ignores SIGTERM and cannot be killed from inside. So the
// agent's container runs this binary, copied in with the mounts, as its
// init: `airlock __k8s-init -- COMMAND...` (KubernetesInitCommand), as the
// pod's user. It runs the command, forwards stop signals to it, reaps
// orphans, and ends with the command's status, taking whatever the command
// left with it; Stop reaches it with `airlock __k8s-init kill TERM|KILL`
// through exec. `airlock __k8s-init put DIR NAME` writes its standard input
// to DIR/NAME whole, as the pod's user (HandProxyFile).
const (
	// KubernetesInitCommand is the hidden subcommand of the airlock binary
	// that is PID 1 of a pod's agent container.
	KubernetesInitCommand = "__k8s-init"

	// kubeKillSignal asks the init to kill everything at once (Stop's
	// timeout passed). The command may send it too: it only ends itself.
	kubeKillSignal = unix.SIGUSR1
)

// KubernetesInit is a pod's init (KubernetesInitCommand), or, with "kill",
// the signal Stop sends it, or, with "put", a file handed to the pod.
func KubernetesInit(args []string, stderr io.Writer) int {
	if (len(args) == 3 || len(args) == 4) && args[0] == "put" {
		size := int64(-1) // a pod of an older airlock: no size given
		if len(args) == 4 {
			n, err := strconv.ParseInt(args[3], 10, 64)
			if err != nil || n < 0 {
				fmt.Fprintf(stderr, "airlock init: put: %q is not a size\n", args[3])
				return 2
			}
			size = n
		}
		if err := putFile(args[1], args[2], os.Stdin, size); err != nil {
			fmt.Fprintf(stderr, "airlock init: put: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) == 2 && args[0] == "kill" {
		sig := unix.SIGTERM
		if args[1] == "KILL" {
			sig = kubeKillSignal
		}
		if err := unix.Kill(1, sig); err != nil {
			fmt.Fprintf(stderr, "airlock init: kill: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) == 2 && args[0] == "--unpack" {
		if err := unpackInPlace(os.Stdin, args[1]); err != nil {
			fmt.Fprintf(stderr, "airlock init: unpack: %v\n", err)
			return 1
		}
		return 0
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	var cmd *exec.Cmd
	switch {
	case len(args) == 2 && args[0] == "--await":
		l, code := awaitLaunch(args[1], sigs, stderr)
		if l == nil {
			return code
		}
		cmd = exec.Command(l.Cmd[0], l.Cmd[1:]...)
		cmd.Env, cmd.Dir = withEnv(os.Environ(), l.Env), l.Dir
	case len(args) >= 2 && args[0] == "--":
		cmd = exec.Command(args[1], args[2:]...)
	default:
		fmt.Fprintln(stderr, "airlock init: usage: "+KubernetesInitCommand+" -- COMMAND... | --await DIR")
		return 2
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "airlock init: start %s: %v\n", cmd.Path, err)
		return 127
	}
	code := reapKube(cmd.Process.Pid, sigs)
	// What the command left behind goes with it, as when a container's
	// PID 1 ends.
	unix.Kill(-1, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(-1, nil, 0, nil); err != nil {
			break
		}
	}
	return code
}

// reapKube is reap forwarding the stop signals __k8s-init kill sends;
// its kill signal ends every process.
func reapKube(pid int, sigs <-chan os.Signal) int {
	return reap(pid, sigs, func(s os.Signal) {
		switch s := s.(unix.Signal); s {
		case unix.SIGCHLD, unix.SIGURG, unix.SIGWINCH, unix.SIGPIPE:
			// SIGURG is the Go runtime's own preemption signal.
		case kubeKillSignal:
			unix.Kill(-1, unix.SIGKILL)
		default:
			unix.Kill(pid, s)
		}
	})
}

// handedTempPrefix starts the names under which handed files are written
// before they take their own: a sync never copies them home.
const handedTempPrefix = ".airlock-handed-"

// maxHandedFile bounds a handed file; credentials are a few KiB.
const maxHandedFile = 1 << 20

// putFile writes r to dir/name whole: under a new name of its own (never
// through a link: created exclusively, relative to dir), readable by this
// user alone, then renamed over name, so that a reader polling for name
// never sees half of it, and whatever was at name (a link too) is replaced.
//
// size, unless negative, is how many bytes the sender sent: under load the
// container runtime can lose an exec's stream, and a file cut short (or
// empty) must not replace a good one.
func putFile(dir, name string, r io.Reader, size int64) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.HasPrefix(name, handedTempPrefix) {
		return fmt.Errorf("%q is not a file name", name)
	}
	data, err := io.ReadAll(io.LimitReader(r, maxHandedFile+1))
	if err != nil {
		return err
	}
	if len(data) > maxHandedFile {
		return fmt.Errorf("%s: over %d KiB", name, maxHandedFile>>10)
	}
	if size >= 0 && int64(len(data)) != size {
		return fmt.Errorf("%s: %d bytes came of the %d sent; the file is left as it was", name, len(data), size)
	}
	d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(d)
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	tmp := handedTempPrefix + hex.EncodeToString(b)
	fd, err := unix.Openat(d, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s/%s: %w", dir, tmp, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(d, tmp, d, name)
	}
	if err != nil {
		unix.Unlinkat(d, tmp, 0)
		return fmt.Errorf("write %s/%s: %w", dir, name, err)
	}
	return nil
}

// warmLaunch is what a warm pod's init runs once the pod is claimed
// (kubernetes_warm.go): written by airlock into the pod's launch volume,
// which only airlock's exec and the init see before the command starts.
type warmLaunch struct {
	Cmd []string `json:"cmd"`
	Env []string `json:"env,omitempty"`
	Dir string   `json:"dir,omitempty"`
}

// The files of a launch in its directory: the launch, then the go-ahead,
// written after it (the last entry of the stream that brings them), so a
// launch is never read half-written.
const (
	launchFile = "launch.json"
	launchGo   = "go"
	// launchMax caps the launch file: a command and its environment.
	launchMax = 1 << 20
)

// awaitLaunch waits for the go-ahead in dir and reads the launch, which it
// removes (it holds the channel's key). A stop signal before it ends the
// wait, as it would end the command.
func awaitLaunch(dir string, sigs <-chan os.Signal, stderr io.Writer) (*warmLaunch, int) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Lstat(filepath.Join(dir, launchGo)); err == nil {
			break
		}
		select {
		case s := <-sigs:
			switch s {
			case unix.SIGTERM, unix.SIGINT, unix.SIGHUP, kubeKillSignal:
				return nil, 128 + int(s.(unix.Signal))
			}
		case <-tick.C:
		}
	}
	l, err := readLaunch(filepath.Join(dir, launchFile))
	os.Remove(filepath.Join(dir, launchFile))
	os.Remove(filepath.Join(dir, launchGo))
	if err != nil {
		fmt.Fprintf(stderr, "airlock init: %v\n", err)
		return nil, 127
	}
	return l, 0
}

func readLaunch(path string) (*warmLaunch, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read the launch: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, launchMax+1))
	if err != nil {
		return nil, fmt.Errorf("read the launch: %w", err)
	}
	if len(b) > launchMax {
		return nil, fmt.Errorf("read the launch: larger than %d bytes", launchMax)
	}
	var l warmLaunch
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("read the launch: %w", err)
	}
	if len(l.Cmd) == 0 {
		return nil, errors.New("read the launch: no command")
	}
	return &l, nil
}

// withEnv is base with the variables of add set, as a container runtime
// sets a container's over its image's.
func withEnv(base, add []string) []string {
	out := make([]string, 0, len(base)+len(add))
	set := map[string]bool{}
	for _, e := range add {
		k, _, _ := strings.Cut(e, "=")
		set[k] = true
	}
	for _, e := range base {
		if k, _, _ := strings.Cut(e, "="); !set[k] {
			out = append(out, e)
		}
	}
	return append(out, add...)
}

// unpackInPlace writes a tar stream below dir, writing over existing files
// in place: in a warm pod a file mount is bound by its inode, so a file
// replaced by a new one would not be the one the command sees. The stream
// is airlock's own (the claim's files); names stay below dir all the same.
func unpackInPlace(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	// The runtime can lose an exec's stream under load, and archive/tar
	// takes a stream cut at an entry's end (or an empty one) for a whole
	// archive: only the end-of-archive marker (two zero blocks) says the
	// sender got to its end.
	tail := &lastBytes{}
	tr := tar.NewReader(io.TeeReader(r, tail))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if !tail.zeroBlocks() {
				return errors.New("the stream ended before the archive's end")
			}
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(strings.TrimSuffix(h.Name, "/"))
		if !filepath.IsLocal(name) {
			return fmt.Errorf("%q: not below %s", h.Name, dir)
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return err
			}
			err = root.Chmod(name, mode)
		case tar.TypeReg:
			var f *os.File
			if f, err = root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, mode); err == nil {
				_, err = io.Copy(f, tr)
				if err == nil {
					// Through the descriptor, not the name: the init takes
					// the go-ahead away as soon as it appears, and a file
					// written over keeps its old mode otherwise.
					err = f.Chmod(mode)
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		case tar.TypeSymlink:
			root.Remove(name)
			err = root.Symlink(h.Linkname, name)
		default:
			err = fmt.Errorf("%q: entries of type %q are not written", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// lastBytes keeps the last two tar blocks written to it.
type lastBytes struct {
	buf [2 * 512]byte
	n   int64 // bytes written in all
}

func (l *lastBytes) Write(p []byte) (int, error) {
	if len(p) >= len(l.buf) {
		copy(l.buf[:], p[len(p)-len(l.buf):])
	} else {
		copy(l.buf[:], l.buf[len(p):])
		copy(l.buf[len(l.buf)-len(p):], p)
	}
	l.n += int64(len(p))
	return len(p), nil
}

// zeroBlocks reports whether what was written ends with tar's
// end-of-archive marker.
func (l *lastBytes) zeroBlocks() bool {
	return l.n >= int64(len(l.buf)) && bytes.Count(l.buf[:], []byte{0}) == len(l.buf)
}
