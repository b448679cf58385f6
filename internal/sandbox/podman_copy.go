package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// Podman copies into and out of a running container (its archive API,
// `podman cp`) inside the mount namespace of the container's process.
// Under gVisor that process is the sandbox's, whose namespace holds none of
// the container's files: every path "could not be found on container".
// So for a running container under a runtime other than the service's
// default, Stat, CopyTo and CopyFrom run tar (and stat) in the container
// through exec, as the container's user. The stream that comes back is the
// container's, as the archive API's is: the caller treats it as hostile.

// execCopy reports whether files of container id are copied through
// exec, and as whom.
func (q *podmanQuirks) execCopy(ctx context.Context, d *Docker, id string) (user string, ok bool, err error) {
	var c struct {
		OCIRuntime string `json:"OCIRuntime"`
		State      struct {
			Running bool `json:"Running"`
		} `json:"State"`
		Config struct {
			User string `json:"User"`
		} `json:"Config"`
	}
	if err := podmanGet(ctx, d.cli, "/v4.0.0/libpod/containers/"+url.PathEscape(id)+"/json", &c); err != nil {
		// The archive API says what is wrong (not found, unreachable).
		return "", false, nil
	}
	info, err := q.describe(ctx, d)
	if err != nil {
		return "", false, err
	}
	if !c.State.Running || c.OCIRuntime == "" || c.OCIRuntime == info.Host.OCIRuntime.Name {
		return "", false, nil
	}
	if err := checkUser(c.Config.User); err != nil {
		return "", false, fmt.Errorf("copy files of container %s (runtime %s) through exec: %w", id, c.OCIRuntime, err)
	}
	return c.Config.User, true, nil
}

// execOut runs cmd in container id as user and returns its stdout, or an
// error with its stderr; notFound is set when stderr says a path is missing.
func (d *Docker) execOut(ctx context.Context, id, user string, cmd ...string) (out []byte, notFound bool, err error) {
	var stdout, stderr bytes.Buffer
	code, err := d.Exec(ctx, id, ExecSpec{Cmd: cmd, User: user, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return nil, false, err
	}
	if code != 0 {
		msg := strings.TrimSpace(stderr.String())
		return nil, strings.Contains(msg, "No such file"), fmt.Errorf("%s exited with %d: %s", cmd[0], code, firstLine(msg))
	}
	return stdout.Bytes(), false, nil
}

// execStat is Stat through exec, with find(1) (gVisor's 2022 kernel
// refuses the statx(2) that stat(1) makes): the path itself is described
// (a link is not followed), with its link's target.
func (d *Docker) execStat(ctx context.Context, id, user, p string) (PathInfo, error) {
	out, notFound, err := d.execOut(ctx, id, user, "find", p, "-maxdepth", "0", "-printf", `%s %m %T@ %y\0%l\0`)
	if notFound {
		return PathInfo{}, fmt.Errorf("stat %s in container %s: %w: %v", p, id, ErrNotFound, err)
	}
	if err != nil {
		return PathInfo{}, fmt.Errorf("stat %s in container %s: %w", p, id, err)
	}
	first, rest, _ := strings.Cut(string(out), "\x00")
	target, _, _ := strings.Cut(rest, "\x00")
	f := strings.Fields(first)
	bad := func() (PathInfo, error) {
		return PathInfo{}, fmt.Errorf("stat %s in container %s: unexpected answer %q", p, id, firstLine(first))
	}
	if len(f) != 4 || len(f[3]) != 1 {
		return bad()
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	perm, err2 := strconv.ParseUint(f[1], 8, 32)
	mtime, err3 := strconv.ParseFloat(f[2], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return bad()
	}
	mode := findMode(f[3][0], uint32(perm))
	return PathInfo{
		Name:       path.Base(p),
		Size:       size,
		Mode:       mode,
		ModTime:    time.Unix(0, int64(mtime*1e9)),
		LinkTarget: target,
	}, nil
}

// execCopyFrom is CopyFrom through exec: tar of path's last element, from
// its parent directory. tar reports a file it could not read only when it
// exits, after the end of its archive, which a reader stops at; so the
// archive is passed on entry by entry and ends only if tar succeeded: else
// the reader gets tar's error in place of the end.
func (d *Docker) execCopyFrom(ctx context.Context, id, user, p string) (io.ReadCloser, error) {
	clean := path.Clean("/" + p)
	dir, name := path.Split(clean)
	if name == "" {
		dir, name = "/", "."
	}
	raw, rawW := io.Pipe()
	go func() {
		var stderr bytes.Buffer
		code, err := d.Exec(ctx, id, ExecSpec{Cmd: []string{"tar", "-C", dir, "-cf", "-", "--", name}, User: user, Stdout: rawW, Stderr: &stderr})
		if err == nil && code != 0 {
			err = fmt.Errorf("tar in the container exited with %d: %s", code, firstLine(stderr.String()))
			if strings.Contains(stderr.String(), "No such file") {
				err = fmt.Errorf("%w: %v", ErrNotFound, err)
			}
		}
		if err != nil {
			err = fmt.Errorf("copy %s out of container %s: %w", p, id, err)
		}
		rawW.CloseWithError(err)
	}()
	out, outW := io.Pipe()
	go func() {
		defer raw.Close()
		tr, tw := tar.NewReader(raw), tar.NewWriter(outW)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				// What follows tar's end is padding, or tar's error.
				if _, err := io.Copy(io.Discard, raw); err != nil {
					outW.CloseWithError(err)
					return
				}
				outW.CloseWithError(tw.Close())
				return
			}
			if err == nil {
				err = tw.WriteHeader(hdr)
			}
			if err == nil {
				_, err = io.Copy(tw, tr)
			}
			if err != nil {
				outW.CloseWithError(err)
				return
			}
		}
	}()
	return out, nil
}

// execCopyTo is CopyTo through exec: tar extracting into dir, as the
// container's user (who then owns what it extracts).
func (d *Docker) execCopyTo(ctx context.Context, id, user, dir string, r io.Reader) error {
	var stderr bytes.Buffer
	code, err := d.Exec(ctx, id, ExecSpec{Cmd: []string{"tar", "-C", dir, "-xf", "-"}, User: user, Stdin: r, Stderr: &stderr})
	if err == nil && code != 0 {
		err = fmt.Errorf("tar in the container exited with %d: %s", code, firstLine(stderr.String()))
	}
	if err != nil {
		return fmt.Errorf("copy into %s in container %s: %w", dir, id, err)
	}
	return nil
}

// findMode turns find's %y (the file's type) and %m (its permission
// bits, with setuid, setgid and sticky) into an os.FileMode.
func findMode(kind byte, perm uint32) os.FileMode {
	mode := os.FileMode(perm & 0o777)
	switch kind {
	case 'd':
		mode |= os.ModeDir
	case 'l':
		mode |= os.ModeSymlink
	case 'p':
		mode |= os.ModeNamedPipe
	case 's':
		mode |= os.ModeSocket
	case 'c':
		mode |= os.ModeDevice | os.ModeCharDevice
	case 'b':
		mode |= os.ModeDevice
	}
	if perm&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if perm&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if perm&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// firstLine is the first line of what the container wrote, at most 200
// bytes and safe for a terminal: enough to say what went wrong.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return untrusted.Line(s)
}
