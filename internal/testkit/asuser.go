package testkit

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// AsUser runs bin (typically os.Args[0], the test binary) with args as the
// unprivileged user u, through runuser, and returns its combined output. It
// needs root. The binary is copied where u can run it, and u gets its own
// temporary directory, home and runtime directory (XDG_RUNTIME_DIR, where
// its rootless Podman listens), as a login would give it. CI is passed on.
func AsUser(t testing.TB, u *user.User, bin string, args ...string) (string, error) {
	t.Helper()
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		t.Fatalf("user %s: uid %q: %v", u.Username, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		t.Fatalf("user %s: gid %q: %v", u.Username, u.Gid, err)
	}
	dir, err := os.MkdirTemp("", "airlock-asuser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(dir, filepath.Base(bin))
	if err := copyExecutable(bin, copied); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
		"HOME=" + u.HomeDir,
		"USER=" + u.Username,
		"TMPDIR=" + dir,
		"XDG_RUNTIME_DIR=/run/user/" + u.Uid,
	}
	for _, name := range []string{"CI", "AIRLOCK_TEST_USER"} {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	cmd := exec.Command("runuser", append([]string{"-u", u.Username, "--", "env", "-i"}, append(env, append([]string{copied}, args...)...)...)...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func copyExecutable(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
