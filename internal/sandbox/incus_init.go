package sandbox

import (
	"encoding/base64"
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
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Incus does not report the exit code of a container's init, and its
// containers need an init of their own anyway (an image's command is not
// one). So every Incus instance airlock makes runs this binary as its init,
// as the container's root: `airlock __incus-init` (IncusInitCommand). It
// prepares what Docker prepares outside the container (tmpfs mounts,
// /etc/hosts, rlimits), drops to the spec's user with no capabilities and no
// new privileges, runs the command, reaps orphans, forwards the stop
// signals, and records the command's exit status and output in a directory
// only the container's root may write (incusStateDir). The host reads those
// through Incus' file API; the agent, running as another user without
// capabilities, can neither write them nor signal or trace this process.
const (
	// IncusInitCommand is the hidden subcommand of the airlock binary that
	// runs as an Incus instance's init.
	IncusInitCommand = "__incus-init"

	// incusInitEnv carries the init's spec (base64 JSON) through LXC's
	// lxc.environment: lxc.init.cmd splits on spaces and knows no quoting.
	incusInitEnv = "AIRLOCK_INCUS_INIT"

	// incusStateDir holds the exit record and the output, root-only.
	incusStateDir  = "/.airlock-incus"
	incusExitFile  = incusStateDir + "/exit"
	incusLogFile   = incusStateDir + "/output"
	incusMaxRecord = 4096
	// incusMaxLog caps the output kept; more is dropped, with a note.
	incusMaxLog = 64 << 20

	// incusKillSignal asks the init to kill its command at once (Stop's
	// timeout passed). Only the container's root may send it.
	incusKillSignal = unix.SIGUSR1

	// incusHaltRT is SIGRTMIN+3, the halt signal LXC sends instead of
	// SIGPWR when it finds it blocked in the init (as systemd does; a Go
	// program blocks all signals for a moment whenever it starts a
	// thread). raw.lxc names SIGPWR, so this is only a second line.
	incusHaltRT = unix.Signal(37)
)

// incusInitSpec is what the init runs.
type incusInitSpec struct {
	Cmd     []string `json:"cmd"`
	Env     []string `json:"env"`
	UID     uint32   `json:"uid"`
	GID     uint32   `json:"gid"`
	WorkDir string   `json:"workdir"`
	Tmpfs   []Tmpfs  `json:"tmpfs,omitempty"`
	// Hosts are "address name" lines for /etc/hosts.
	Hosts []string `json:"hosts,omitempty"`
	// Resolv is /etc/resolv.conf, for an instance with a network.
	Resolv string `json:"resolv,omitempty"`
	NoFile uint64 `json:"nofile"`
	// Nesting starts the image's container engine before the command
	// (incus_nesting.go).
	Nesting bool `json:"nesting,omitempty"`
}

// incusExitRecord is what the init leaves when its command ended.
type incusExitRecord struct {
	Code     int       `json:"code"`
	Finished time.Time `json:"finished"`
}

func encodeIncusInitSpec(s incusInitSpec) (string, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(data), nil
}

// parseIncusExitRecord reads an exit record strictly: one JSON object with
// exactly the known fields, a code in 0..255 and a time.
func parseIncusExitRecord(data []byte) (incusExitRecord, error) {
	if len(data) > incusMaxRecord {
		return incusExitRecord{}, errors.New("exit record too large")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var rec incusExitRecord
	if err := dec.Decode(&rec); err != nil {
		return incusExitRecord{}, fmt.Errorf("exit record: %w", err)
	}
	if dec.More() {
		return incusExitRecord{}, errors.New("exit record: trailing data")
	}
	if rec.Code < 0 || rec.Code > 255 || rec.Finished.IsZero() {
		return incusExitRecord{}, fmt.Errorf("exit record: code %d finished %v out of range", rec.Code, rec.Finished)
	}
	return rec, nil
}

// IncusInit is the instance's init (IncusInitCommand). It returns only on a
// failure to start the command; otherwise it exits the process.
func IncusInit(args []string, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "kill" {
		// Run by the backend through Incus' exec, as the container's root.
		if err := unix.Kill(1, incusKillSignal); err != nil {
			fmt.Fprintf(stderr, "airlock init: kill: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		return incusOp(args, os.Stdin, os.Stdout, stderr)
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(stderr, "airlock init: this runs only as an Incus instance's init")
		return 2
	}
	code, err := incusInit()
	if err != nil {
		fmt.Fprintf(stderr, "airlock init: %v\n", err)
		writeIncusExit(127)
		return 127
	}
	return code
}

func incusInit() (int, error) {
	raw := os.Getenv(incusInitEnv)
	os.Unsetenv(incusInitEnv)
	data, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return 0, fmt.Errorf("spec: %w", err)
	}
	var spec incusInitSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return 0, fmt.Errorf("spec: %w", err)
	}
	if len(spec.Cmd) == 0 || spec.UID == 0 || spec.GID == 0 {
		return 0, errors.New("spec: no command, or a root user")
	}
	if err := prepareIncusState(); err != nil {
		return 0, err
	}
	log, err := os.OpenFile(incusLogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, fmt.Errorf("output: %w", err)
	}
	out := &cappedWriter{w: log, left: incusMaxLog}
	if err := setupIncusInit(spec); err != nil {
		fmt.Fprintf(out, "airlock init: %v\n", err)
		return 0, err
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGPWR, incusHaltRT, unix.SIGINT, unix.SIGHUP, incusKillSignal, unix.SIGCHLD)
	if spec.Nesting {
		startIncusEngine(spec, out)
	}

	// The command is started through this binary's run operation, which
	// drops to the user with no capabilities and no new privileges before
	// it execs. The init itself keeps its bounding set: LXC gives processes
	// that Incus' exec starts the init's, and those must drop privileges
	// too (incusOp).
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	user := strconv.FormatUint(uint64(spec.UID), 10) + ":" + strconv.FormatUint(uint64(spec.GID), 10)
	cmd := exec.Command(self, append([]string{IncusInitCommand, "run", user, spec.WorkDir, "--"}, spec.Cmd...)...)
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(out, "airlock init: start %s: %v\n", spec.Cmd[0], err)
		writeIncusExit(127)
		return 127, nil
	}
	code := reapIncus(cmd.Process.Pid, sigs)
	// What the command left behind goes with it.
	unix.Kill(-1, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(-1, nil, 0, nil); err != nil {
			break
		}
	}
	// Output copied by exec's goroutines is complete once the pipe closed;
	// with every process gone it has.
	waitCopy(cmd)
	log.Close()
	writeIncusExit(code)
	return code, nil
}

// waitCopy waits for exec's output copying (the process was reaped by
// reapIncus, so cmd.Wait would fail; its copying goroutines end on EOF).
func waitCopy(cmd *exec.Cmd) {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// reapIncus is reap with LXC's signals: its kill signal ends every
// process, its halt signal asks the command to stop.
func reapIncus(pid int, sigs <-chan os.Signal) int {
	return reap(pid, sigs, func(s os.Signal) {
		switch s {
		case unix.SIGCHLD:
		case incusKillSignal:
			unix.Kill(-1, unix.SIGKILL)
		case unix.SIGPWR, incusHaltRT:
			// LXC's halt signal: a stop asked for with a timeout.
			unix.Kill(pid, unix.SIGTERM)
		default:
			unix.Kill(pid, s.(unix.Signal))
		}
	})
}

// prepareIncusState makes the root-only state directory and removes an
// earlier start's exit record.
func prepareIncusState() error {
	if err := os.Mkdir(incusStateDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("state directory: %w", err)
	}
	fi, err := os.Lstat(incusStateDir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || st == nil || st.Uid != 0 {
		return fmt.Errorf("state directory %s is not a directory of root's", incusStateDir)
	}
	if err := os.Chmod(incusStateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if err := os.Remove(incusExitFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}

// setupIncusInit does what Docker does outside the container.
func setupIncusInit(spec incusInitSpec) error {
	// LXC leaves loopback down in an instance without a network.
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	for _, t := range spec.Tmpfs {
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
		if !t.Exec {
			flags |= unix.MS_NOEXEC
		}
		opts := "mode=1777"
		if t.SizeBytes > 0 {
			opts += ",size=" + strconv.FormatInt(t.SizeBytes, 10)
		}
		if err := os.MkdirAll(t.Target, 0o755); err != nil {
			return fmt.Errorf("tmpfs %s: %w", t.Target, err)
		}
		if err := unix.Mount("tmpfs", t.Target, "tmpfs", flags, opts); err != nil {
			return fmt.Errorf("tmpfs %s: %w", t.Target, err)
		}
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	for _, h := range spec.Hosts {
		hosts += h + "\n"
	}
	if err := writeFileNoFollow("/etc/hosts", []byte(hosts), 0o644); err != nil {
		return fmt.Errorf("/etc/hosts: %w", err)
	}
	if spec.Resolv != "" {
		os.Remove("/etc/resolv.conf") // a link, in many images
		if err := writeFileNoFollow("/etc/resolv.conf", []byte(spec.Resolv), 0o644); err != nil {
			return fmt.Errorf("/etc/resolv.conf: %w", err)
		}
	}
	if spec.NoFile > 0 {
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return fmt.Errorf("nofile limit: %w", err)
		}
		n := min(spec.NoFile, rl.Max)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			return fmt.Errorf("nofile limit: %w", err)
		}
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// writeIncusExit records the command's status atomically.
func writeIncusExit(code int) {
	data, _ := json.Marshal(incusExitRecord{Code: code, Finished: time.Now().UTC()})
	tmp := incusExitFile + ".new"
	if err := writeFileNoFollow(tmp, data, 0o600); err != nil {
		return
	}
	os.Rename(tmp, incusExitFile)
	// The rename must be on disk before the init ends and the instance
	// stops; the file's data already is.
	if d, err := os.Open(incusStateDir); err == nil {
		d.Sync()
		d.Close()
	}
}

func writeFileNoFollow(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// lookPathIn resolves a bare command name on the PATH of the command's own
// environment (exec.Command looks at the init's).
func lookPathIn(name string, env []string) (string, bool) {
	if strings.Contains(name, "/") {
		return "", false
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// cappedWriter keeps up to left bytes, then drops the rest.
type cappedWriter struct {
	mu   sync.Mutex
	w    io.Writer
	left int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left <= 0 {
		return len(p), nil
	}
	q := p
	if int64(len(q)) > c.left {
		q = q[:c.left]
	}
	n, _ := c.w.Write(q)
	c.left -= int64(n)
	if c.left <= 0 {
		io.WriteString(c.w, "\n[airlock: output truncated]\n")
	}
	return len(p), nil
}
