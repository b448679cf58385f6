package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/airlock-dev/airlock/internal/archive"
)

// What the backend runs in an instance through Incus' exec API starts as
// the container's root (Incus' exec knows no no_new_privs), so it goes
// through this binary, which drops to the given user the way the init does
// before doing anything:
//
//	__incus-init run  UID:GID CWD -- ARGV...  exec a command
//	__incus-init stat UID:GID PATH            describe a path (JSON)
//	__incus-init tar  UID:GID PATH            PATH as a tar stream
//	__incus-init untar UID:GID DIR            extract a tar stream into DIR
//
// As the agent's user, these can read and write only what the agent can;
// their output is as untrusted as the agent.

// incusStat is what the stat operation prints.
type incusStat struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	Mode    uint32 `json:"mode"` // os.FileMode
	ModTime int64  `json:"mtime_ns"`
	Link    string `json:"link,omitempty"`
}

// incusStatMissing is the stat operation's exit status for a missing path.
const incusStatMissing = 3

func incusOp(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "airlock: %v\n", err)
		return 126
	}
	if len(args) < 3 {
		return fail(fmt.Errorf("%s: too few arguments", IncusInitCommand))
	}
	op, user := args[0], args[1]
	uid, gid, ok := numericUser(user)
	if !ok || uid <= 0 || gid <= 0 {
		return fail(fmt.Errorf("%s %s: user %q is not a non-root uid:gid", IncusInitCommand, op, user))
	}
	// no_new_privs and the bounding set are per thread; run's exec happens
	// on this one.
	runtime.LockOSThread()
	if err := dropTo(uid, gid); err != nil {
		return fail(err)
	}
	switch op {
	case "run":
		if len(args) < 5 || args[3] != "--" {
			return fail(errors.New("run: want UID:GID CWD -- ARGV"))
		}
		argv := args[4:]
		env := os.Environ()
		if args[2] != "" {
			if err := os.Chdir(args[2]); err != nil {
				return fail(err)
			}
		}
		path := argv[0]
		if p, ok := lookPathIn(argv[0], env); ok {
			path = p
		} else if !strings.Contains(argv[0], "/") {
			fmt.Fprintf(stderr, "airlock: %s: command not found\n", argv[0])
			return 127
		}
		err := syscall.Exec(path, argv, env)
		fmt.Fprintf(stderr, "airlock: exec %s: %v\n", argv[0], err)
		if errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	case "stat":
		fi, err := os.Lstat(args[2])
		if errors.Is(err, os.ErrNotExist) {
			return incusStatMissing
		}
		if err != nil {
			return fail(err)
		}
		st := incusStat{Name: fi.Name(), Size: fi.Size(), Mode: uint32(fi.Mode()), ModTime: fi.ModTime().UnixNano()}
		if fi.Mode()&os.ModeSymlink != 0 {
			st.Link, _ = os.Readlink(args[2])
		}
		if err := json.NewEncoder(stdout).Encode(st); err != nil {
			return fail(err)
		}
		return 0
	case "tar":
		p := filepath.Clean(args[2])
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return incusStatMissing
		}
		dir, name := filepath.Dir(p), filepath.Base(p)
		rel := name
		if p == "/" {
			rel = "."
		}
		if err := tarHost(stdout, dir, rel, name); err != nil {
			return fail(err)
		}
		return 0
	case "untar":
		if _, err := archive.Extract(stdin, args[2], archive.Options{}); err != nil {
			return fail(err)
		}
		return 0
	}
	return fail(fmt.Errorf("%s: unknown operation %q", IncusInitCommand, op))
}

// dropTo makes this thread (and, for the ids, the process) the user
// uid:gid with no supplementary groups, no capabilities and no way to gain
// privileges.
func dropTo(uid, gid int) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if os.Getuid() == 0 {
		for c := 0; c <= 63; c++ {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("drop capability %d: %w", c, err)
			}
		}
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid {
		return errors.New("could not drop to user " + strconv.Itoa(uid))
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur > nofileLimit {
		n := uint64(nofileLimit)
		unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n})
	}
	return nil
}
