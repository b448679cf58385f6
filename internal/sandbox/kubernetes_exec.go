package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/airlock-dev/airlock/internal/archive"
)

// MountSyncer copies what a container wrote in its writable mounts back to
// their host sources, for engines whose mounts are copies (Kubernetes).
type MountSyncer interface {
	// SyncMounts copies the mounts at targets (nil: every writable mount)
	// of container id back to the host. What comes back is the sandbox's:
	// it is extracted as hostile (no links out, no devices, capped).
	SyncMounts(ctx context.Context, id string, targets []string) error
}

// The caps of one mount's copy back to the host.
const (
	KubernetesSyncMaxBytes   = 4 << 30
	KubernetesSyncMaxEntries = 500_000
)

// stream runs a remote command (exec or attach) in a container of a pod.
func (k *Kubernetes) stream(ctx context.Context, pod, sub string, opts interface{ isOpts() }, so remotecommand.StreamOptions) error {
	req := k.api.core.Post().Namespace(k.ns).Resource("pods").Name(pod).SubResource(sub)
	switch o := opts.(type) {
	case execOpts:
		req = req.VersionedParams((*corev1.PodExecOptions)(&o), k.api.params)
	case attachOpts:
		req = req.VersionedParams((*corev1.PodAttachOptions)(&o), k.api.params)
	}
	ex, err := remotecommand.NewSPDYExecutor(k.cfg, "POST", req.URL())
	if err != nil {
		return fmt.Errorf("kubernetes: %s in %s: %w", sub, pod, err)
	}
	if so.Stdout != nil && so.Stderr != nil {
		// The executor copies each output in its own goroutine, and the
		// two are often one writer. One bytes.Buffer's ReadFrom, ending
		// while the other's wrote, cut the buffer back to the length it
		// started with: a command's output was lost, its status 0.
		var mu sync.Mutex
		so.Stdout, so.Stderr = &lockedWriter{mu: &mu, w: so.Stdout}, &lockedWriter{mu: &mu, w: so.Stderr}
	}
	return ex.StreamWithContext(ctx, so)
}

// lockedWriter writes to w under mu. It has no ReadFrom: a copy into it
// writes what it read, a piece at a time, under the lock.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type execOpts corev1.PodExecOptions
type attachOpts corev1.PodAttachOptions

func (execOpts) isOpts()   {}
func (attachOpts) isOpts() {}

// execIn runs cmd in a container and returns its exit code; a command that
// could not run at all is an error.
func (k *Kubernetes) execIn(ctx context.Context, pod, container string, cmd []string, so remotecommand.StreamOptions) (int, error) {
	if so.Stdin == nil && so.Stdout == nil && so.Stderr == nil {
		// The API server refuses an exec with no stream at all (tmux
		// send-keys wants none).
		so.Stdout = io.Discard
	}
	o := execOpts{Container: container, Command: cmd, Stdin: so.Stdin != nil, Stdout: so.Stdout != nil, Stderr: so.Stderr != nil, TTY: so.Tty}
	err := k.stream(ctx, pod, "exec", o, so)
	var ee utilexec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("kubernetes: exec in %s: %w", pod, err)
	}
	return 0, nil
}

// feedInit sends the mounts' files to the init container, which waits for
// them on its standard input.
func (k *Kubernetes) feedInit(ctx context.Context, p *corev1.Pod, spec Spec) error {
	for !initRunning(p) {
		if initDone(p) {
			return nil
		}
		if why := stuck(p); why != "" {
			return fmt.Errorf("kubernetes: start %s: %s", spec.Name, why)
		}
		if err := k.claimStuck(ctx, p); err != nil {
			return fmt.Errorf("kubernetes: start %s: %w", spec.Name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		var err error
		if p, err = k.pod(ctx, p.Name); err != nil {
			return err
		}
	}
	all, err := k.withBinary(spec.Mounts)
	if err != nil {
		return err
	}
	mounts, err := k.podMounts(all)
	if err != nil {
		return err
	}
	if p.Annotations[annotationOnClaim] == "true" {
		// The last pod left these on the claim: they are not the host's
		// to send again.
		mounts = slices.DeleteFunc(mounts, func(m podMount) bool { return m.claim })
	}
	uid, gid, _ := numericUser(spec.User)
	pr, pw := io.Pipe()
	skip := secretFiles(p)
	go func() { pw.CloseWithError(mountsTar(pw, mounts, skip, uid, gid)) }()
	if err := k.attachInit(ctx, p.Name, pr); err != nil {
		return fmt.Errorf("kubernetes: copy the mounts of %s in: %w", spec.Name, err)
	}
	return nil
}

// attachInit sends the tar stream pr to the pod's init container, which
// unpacks it, and closes pr.
func (k *Kubernetes) attachInit(ctx context.Context, pod string, pr *io.PipeReader) error {
	var out bytes.Buffer
	err := k.stream(ctx, pod, "attach",
		attachOpts{Container: initContainer, Stdin: true, Stdout: true, Stderr: true},
		remotecommand.StreamOptions{Stdin: pr, Stdout: &out, Stderr: &out})
	pr.Close()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// mountsTar writes one tar stream of every mount's source, each below its
// volume's directory (m0/...); a file mount is its one file, named after
// its target, a directory's below its own directory (podMount.sub). The
// files skip names (per volume) are left out: they come from a Secret.
func mountsTar(w io.Writer, mounts []podMount, skip map[string][]string, uid, gid int) error {
	return mountsTarThen(w, mounts, skip, uid, gid, func(*tar.Writer) error { return nil })
}

// mountsTarThen is mountsTar with more entries written by then, last.
func mountsTarThen(w io.Writer, mounts []podMount, skip map[string][]string, uid, gid int, then func(*tar.Writer) error) error {
	tw := tar.NewWriter(w)
	for _, m := range mounts {
		name := m.volume + "/" + m.sub()
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(archive.Create(pw, m.Source, name, uid, gid)) }()
		tr := tar.NewReader(pr)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				pr.CloseWithError(err)
				return err
			}
			if slices.Contains(skip[m.volume], strings.TrimSuffix(strings.TrimPrefix(h.Name, name+"/"), "/")) {
				continue
			}
			if err := tw.WriteHeader(h); err != nil {
				pr.CloseWithError(err)
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pr.CloseWithError(err)
				return err
			}
		}
	}
	if err := then(tw); err != nil {
		return err
	}
	return tw.Close()
}

// signal sends sig ("TERM", "KILL") to the agent container's command,
// through its init.
func (k *Kubernetes) signal(ctx context.Context, p *corev1.Pod, sig string) error {
	var out bytes.Buffer
	code, err := k.execIn(ctx, p.Name, agentContainer, []string{BinaryPath, KubernetesInitCommand, "kill", sig},
		remotecommand.StreamOptions{Stdout: &out, Stderr: &out})
	if err != nil {
		return err
	}
	// 137: the signal ended the command, and the init took everything
	// else with it, this kill too, before it returned.
	if code != 0 && code != 128+9 {
		return fmt.Errorf("kubernetes: send SIG%s to %s: exit %d: %s", sig, p.Name, code, strings.TrimSpace(out.String()))
	}
	return nil
}

// SyncMounts copies the writable mounts at targets (nil: all) back to
// their host sources, through the keeper container. Files replace files,
// directories are merged; what the container deleted stays on the host.
func (k *Kubernetes) SyncMounts(ctx context.Context, id string, targets []string) error {
	p, err := k.pod(ctx, id)
	if err != nil {
		return err
	}
	spec, err := specOf(p)
	if err != nil {
		return err
	}
	uid, gid, _ := numericUser(spec.User)
	for i, m := range spec.Mounts {
		if m.ReadOnly || targets != nil && !slices.Contains(targets, m.Target) {
			continue
		}
		err := k.syncMount(ctx, p.Name, podMountOf(m, i), secretFiles(p), uid, gid)
		// A lost stream is the runtime's, not the copy's: another try
		// usually gets through.
		for try := 1; errors.Is(err, errStreamLost) && try < syncTries && ctx.Err() == nil; try++ {
			err = k.syncMount(ctx, p.Name, podMountOf(m, i), secretFiles(p), uid, gid)
		}
		if err != nil {
			return fmt.Errorf("kubernetes: copy %s of %s back to %s: %w", m.Target, spec.Name, m.Source, err)
		}
	}
	return nil
}

// podMountOf is a spec's mount i as podMounts made it, from the host
// source as it is now. Only a writable directory is kept on the claim.
func podMountOf(m Mount, i int) podMount {
	fi, err := os.Stat(m.Source)
	file := err == nil && !fi.IsDir()
	return podMount{Mount: m, volume: "m" + strconv.Itoa(i), file: file, claim: m.Persist && !m.ReadOnly && !file}
}

func (k *Kubernetes) syncMount(ctx context.Context, pod string, m podMount, skip map[string][]string, uid, gid int) error {
	dir, what, dest, opts := inDir+"/"+m.volume+"/"+m.sub(), ".", m.Source, k.syncMax
	if m.file {
		dir, what, dest = inDir+"/"+m.volume, m.sub(), filepath.Dir(m.Source)
		opts.Rename = filepath.Base(m.Source)
	}
	out, pw := io.Pipe()
	pr := io.ReadCloser(out)
	if names := skip[m.volume]; len(names) > 0 {
		pr = withoutEntries(out, names)
	}
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		code, err := k.execIn(ctx, pod, keeperContainer, []string{"tar", "-c", "-f", "-", "-C", dir, what},
			remotecommand.StreamOptions{Stdout: pw, Stderr: &stderr})
		if err == nil && code != 0 {
			err = fmt.Errorf("tar in the keeper exited %d: %s", code, strings.TrimSpace(stderr.String()))
		}
		pw.CloseWithError(err)
		done <- err
	}()
	// A directory's copy goes into a fresh directory inside it first, so
	// that what is there (a git directory, which Extract never merges
	// into) is replaced, not merged into; then each top-level entry takes
	// the place of the old one.
	// Syncs of one mount from several processes (the run's supervisor,
	// airlock wait) take turns: each replaces what the other is placing.
	unlock, err := lockDir(dest)
	if err != nil {
		pr.Close()
		out.CloseWithError(err)
		<-done
		return err
	}
	defer unlock()
	into := dest
	if !m.file {
		if into, err = os.MkdirTemp(dest, ".airlock-sync-"); err != nil {
			pr.Close()
			out.CloseWithError(err)
			<-done
			return err
		}
		defer os.RemoveAll(into)
	}
	// What Extract leaves out (links out of the copy, devices, fifos) is
	// left out by design.
	tail := &lastBytes{}
	_, err = archive.Extract(io.TeeReader(pr, tail), into, opts)
	pr.Close()
	out.CloseWithError(errors.New("extraction ended"))
	if xerr := <-done; err == nil && xerr != nil {
		err = xerr
	}
	if err == nil && !tail.zeroBlocks() {
		// containerd 1.6 under load loses an exec's output, all of it or
		// its end ("Failed to pipe stdout for container exec ... EOF"),
		// with the exec's status 0, and Extract takes a stream cut at an
		// entry's end for a whole archive. Taken as the copy, it would
		// delete from the host's what it lacks: only tar's end-of-archive
		// marker says the copy is whole.
		err = errStreamLost
	}
	if err != nil {
		return err
	}
	if !m.file {
		if err := replaceEntries(into, dest, skip[m.volume]); err != nil {
			return err
		}
	}
	// A bind mount shows the container's files as its user's; so does the
	// copy, when airlock may give them away.
	if os.Geteuid() == 0 && uid > 0 {
		root := dest
		if m.file {
			root = m.Source
		}
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == dest {
				return err
			}
			return os.Lchown(p, uid, gid)
		})
	}
	return nil
}

// replaceEntries moves every entry of dir src into dst, each replacing the
// entry of its name there (a file by a rename, at once; a directory after
// the old one is removed).
//
// What the copy no longer has is removed from dst, as it was from the
// sandbox's volume (a bind mount shows deletions too: an agent that
// destroyed its repository must not leave the host an older one to fetch
// from), except keep (the Secret's files, which are never copied back) and
// staging directories of syncs.
func replaceEntries(src, dst string, keep []string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	olds, err := os.ReadDir(dst)
	if err != nil {
		return err
	}
	for _, o := range olds {
		name := o.Name()
		if strings.HasPrefix(name, ".airlock-sync-") || slices.Contains(keep, name) ||
			slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == name }) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	for _, e := range ents {
		from, to := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		if fi, err := os.Lstat(to); err == nil && (fi.IsDir() || e.IsDir()) {
			// The old one is moved aside first, so the name is never
			// half removed.
			old := filepath.Join(src, ".old-"+e.Name())
			if err := os.Rename(to, old); err != nil {
				return err
			}
			defer os.RemoveAll(old)
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
	}
	return nil
}

// lockDir holds an exclusive lock on the directory dir (flock on the
// directory itself: nothing is added to it) until the returned function is
// called.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// withoutEntries is the tar stream r without the top-level entries names
// (the Secret's files: in the keeper's view of the volume, empty stand-ins;
// the files handed to the running proxy), what is below them, and the
// temporary names handed files are written under. The stream is the
// sandbox's: only names are looked at, and the caps apply to what passes.
func withoutEntries(r io.Reader, names []string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tr, tw := tar.NewReader(r), tar.NewWriter(pw)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if top, _, _ := strings.Cut(path.Clean(h.Name), "/"); slices.Contains(names, top) || strings.HasPrefix(top, handedTempPrefix) {
				continue
			}
			if err := tw.WriteHeader(h); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(tw, tr); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	return pr
}

// Exec runs a command in the container's agent container. Kubernetes runs
// it as the container's user; another one is refused.
func (k *Kubernetes) Exec(ctx context.Context, id string, spec ExecSpec) (int, error) {
	p, err := k.pod(ctx, id)
	if err != nil {
		return -1, err
	}
	if spec.User != "" {
		cspec, err := specOf(p)
		if err != nil {
			return -1, err
		}
		if spec.User != cspec.User {
			return -1, fmt.Errorf("kubernetes: exec as %s in %s: a pod's commands run as its user (%s): %w", spec.User, id, cspec.User, ErrUnsupported)
		}
	}
	cmd := spec.Cmd
	if spec.WorkDir != "" || len(spec.Env) > 0 {
		wd := cmpOr(spec.WorkDir, ".")
		cmd = append(append([]string{"sh", "-c", `cd "$0" && exec env "$@"`, wd}, spec.Env...), spec.Cmd...)
	}
	so := remotecommand.StreamOptions{Stdin: spec.Stdin, Stdout: spec.Stdout, Stderr: spec.Stderr, Tty: spec.TTY}
	if spec.TTY {
		so.Stderr = nil
		if so.Stdout == nil {
			so.Stdout = io.Discard
		}
		so.TerminalSizeQueue = &sizeQueue{first: spec.Size, ch: spec.Resize, ctx: ctx}
	}
	return k.execIn(ctx, p.Name, agentContainer, cmd, so)
}

// sizeQueue hands the terminal's sizes to the executor.
type sizeQueue struct {
	first TermSize
	sent  bool
	ch    <-chan TermSize
	ctx   context.Context
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	if !q.sent {
		q.sent = true
		if q.first.Width > 0 && q.first.Height > 0 {
			return &remotecommand.TerminalSize{Width: uint16(q.first.Width), Height: uint16(q.first.Height)}
		}
	}
	select {
	case s, ok := <-q.ch:
		if !ok {
			return nil
		}
		return &remotecommand.TerminalSize{Width: uint16(s.Width), Height: uint16(s.Height)}
	case <-q.ctx.Done():
		return nil
	}
}

// Stat describes a path in the agent container (with its stat program).
func (k *Kubernetes) Stat(ctx context.Context, id, p string) (PathInfo, error) {
	var out, errb bytes.Buffer
	code, err := k.execIn(ctx, k.podOf(ctx, id), agentContainer, []string{"stat", "-c", "%s %f %Y", p},
		remotecommand.StreamOptions{Stdout: &out, Stderr: &errb})
	if err != nil {
		return PathInfo{}, err
	}
	if code != 0 {
		return PathInfo{}, fmt.Errorf("kubernetes: stat %s in %s: %w: %s", p, id, ErrNotFound, strings.TrimSpace(errb.String()))
	}
	f := strings.Fields(out.String())
	if len(f) != 3 {
		return PathInfo{}, fmt.Errorf("kubernetes: stat %s in %s: unexpected output %q", p, id, out.String())
	}
	size, _ := strconv.ParseInt(f[0], 10, 64)
	raw, _ := strconv.ParseUint(f[1], 16, 32)
	mtime, _ := strconv.ParseInt(f[2], 10, 64)
	info := PathInfo{Name: path.Base(p), Size: size, Mode: unixMode(uint32(raw)), ModTime: time.Unix(mtime, 0)}
	if info.Mode&fs.ModeSymlink != 0 {
		var link bytes.Buffer
		k.execIn(ctx, k.podOf(ctx, id), agentContainer, []string{"readlink", p}, remotecommand.StreamOptions{Stdout: &link})
		info.LinkTarget = strings.TrimSpace(link.String())
	}
	return info, nil
}

// unixMode turns a st_mode into an fs.FileMode.
func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & 0o170000 {
	case 0o040000:
		mode |= fs.ModeDir
	case 0o120000:
		mode |= fs.ModeSymlink
	case 0o010000:
		mode |= fs.ModeNamedPipe
	case 0o140000:
		mode |= fs.ModeSocket
	case 0o020000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0o060000:
		mode |= fs.ModeDevice
	}
	return mode
}

// CopyTo unpacks r into dir in the agent container (with its tar, as the
// container's user: owners in the stream are not kept).
func (k *Kubernetes) CopyTo(ctx context.Context, id, dir string, r io.Reader) error {
	var out bytes.Buffer
	code, err := k.execIn(ctx, k.podOf(ctx, id), agentContainer, []string{"tar", "-x", "-o", "-f", "-", "-C", dir},
		remotecommand.StreamOptions{Stdin: r, Stdout: &out, Stderr: &out})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("kubernetes: copy into %s:%s: tar exited %d: %s", id, dir, code, strings.TrimSpace(out.String()))
	}
	return nil
}

// CopyFrom streams path out of the agent container as tar, from its tar.
func (k *Kubernetes) CopyFrom(ctx context.Context, id, p string) (io.ReadCloser, error) {
	if _, err := k.Stat(ctx, id, p); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		var errb bytes.Buffer
		code, err := k.execIn(ctx, k.podOf(ctx, id), agentContainer, []string{"tar", "-c", "-f", "-", "-C", path.Dir(p), path.Base(p)},
			remotecommand.StreamOptions{Stdout: pw, Stderr: &errb})
		if err == nil && code != 0 {
			err = fmt.Errorf("kubernetes: copy %s:%s: tar exited %d: %s", id, p, code, strings.TrimSpace(errb.String()))
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// errStreamLost is a sync whose stream did not reach the archive's end.
var errStreamLost = errors.New("the copy's stream was lost on the way; the host's copy is left as it was")

// syncTries is how many times a mount's sync is tried while its stream is
// lost.
const syncTries = 3
