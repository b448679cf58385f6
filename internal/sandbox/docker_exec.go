package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

var _ Execer = (*Docker)(nil)

// Exec runs spec in the running container id over the engine's exec API:
// the streams travel over the hijacked connection of the exec's start
// request, and terminal resizes go to the exec's resize endpoint.
func (d *Docker) Exec(ctx context.Context, id string, spec ExecSpec) (int, error) {
	if len(spec.Cmd) == 0 {
		return 0, errors.New("exec: no command given")
	}
	if err := checkUser(spec.User); err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	size := client.ConsoleSize{}
	if spec.TTY {
		size = client.ConsoleSize{Height: spec.Size.Height, Width: spec.Size.Width}
	}
	created, err := d.cli.ExecCreate(ctx, id, client.ExecCreateOptions{
		User:         spec.User,
		TTY:          spec.TTY,
		ConsoleSize:  size,
		AttachStdin:  spec.Stdin != nil,
		AttachStdout: true,
		AttachStderr: true,
		Env:          spec.Env,
		WorkingDir:   spec.WorkDir,
		Cmd:          spec.Cmd,
	})
	if err != nil {
		return 0, d.engineError("exec in container "+id, err)
	}
	att, err := d.cli.ExecAttach(ctx, created.ID, client.ExecAttachOptions{TTY: spec.TTY, ConsoleSize: size})
	if err != nil {
		return 0, d.engineError("exec in container "+id, err)
	}
	defer att.Close()

	if spec.TTY && spec.Size != (TermSize{}) {
		// Engines before API 1.42 ignore the size given at creation.
		d.cli.ExecResize(ctx, created.ID, client.ExecResizeOptions{Height: spec.Size.Height, Width: spec.Size.Width})
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	defer func() { close(done); wg.Wait() }()
	if spec.Resize != nil && spec.TTY {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case sz, ok := <-spec.Resize:
					if !ok {
						return
					}
					// A resize racing the command's end fails harmlessly.
					d.cli.ExecResize(ctx, created.ID, client.ExecResizeOptions{Height: sz.Height, Width: sz.Width})
				}
			}
		}()
	}
	if spec.Stdin != nil {
		// Not waited for: a read of the user's terminal blocks until the
		// next key, long after the command may have ended.
		go func() {
			io.Copy(att.Conn, spec.Stdin)
			att.CloseWrite()
		}()
	}
	stdout, stderr := orDiscard(spec.Stdout), orDiscard(spec.Stderr)
	copyErr := make(chan error, 1)
	go func() {
		var err error
		if spec.TTY {
			_, err = io.Copy(stdout, att.Reader)
		} else {
			_, err = stdcopy.StdCopy(stdout, stderr, att.Reader)
		}
		copyErr <- err
	}()
	select {
	case err := <-copyErr:
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("exec in container %s: %w", id, err)
		}
	case <-ctx.Done():
		return 0, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}
	// The output ends a moment before the engine records the exit status.
	for i := 0; ; i++ {
		res, err := d.cli.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
		if err != nil {
			return 0, d.engineError("exec in container "+id, err)
		}
		if !res.Running || i == 100 {
			return res.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Stat describes path in the container.
func (d *Docker) Stat(ctx context.Context, id, path string) (PathInfo, error) {
	if d.podman != nil {
		if user, ok, err := d.podman.execCopy(ctx, d, id); err != nil {
			return PathInfo{}, err
		} else if ok {
			return d.execStat(ctx, id, user, path)
		}
	}
	res, err := d.cli.ContainerStatPath(ctx, id, client.ContainerStatPathOptions{Path: path})
	if err != nil {
		return PathInfo{}, d.engineError(fmt.Sprintf("stat %s in container %s", path, id), err)
	}
	s := res.Stat
	return PathInfo{Name: s.Name, Size: s.Size, Mode: s.Mode, ModTime: s.Mtime, LinkTarget: s.LinkTarget}, nil
}

// CopyTo extracts the tar stream r into dir in the container. The engine
// resolves dir inside the container's own file system, and refuses to
// replace a directory with a file or the other way round.
func (d *Docker) CopyTo(ctx context.Context, id, dir string, r io.Reader) error {
	if d.podman != nil {
		if user, ok, err := d.podman.execCopy(ctx, d, id); err != nil {
			return err
		} else if ok {
			return d.execCopyTo(ctx, id, user, dir, r)
		}
	}
	if _, err := d.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: dir, Content: r}); err != nil {
		return d.engineError(fmt.Sprintf("copy into %s in container %s", dir, id), err)
	}
	return nil
}

// CopyFrom returns path in the container as a tar stream.
func (d *Docker) CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, error) {
	if d.podman != nil {
		if user, ok, err := d.podman.execCopy(ctx, d, id); err != nil {
			return nil, err
		} else if ok {
			return d.execCopyFrom(ctx, id, user, path)
		}
	}
	res, err := d.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, d.engineError(fmt.Sprintf("copy %s out of container %s", path, id), err)
	}
	if d.podman != nil {
		return podmanArchive(res.Content, path), nil
	}
	return res.Content, nil
}
