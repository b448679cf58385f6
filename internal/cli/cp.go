package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/archive"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

func newCpCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC RUN:/PATH | RUN:/PATH DEST",
		Short: "Copy files into or out of a run's sandbox",
		Long: `Copy a file or directory between this machine and a run's sandbox, like
docker cp: into an existing directory the copy keeps its name, otherwise it
takes the destination's name.

Copies into the sandbox are owned by the agent's user. What comes out of a
sandbox is treated as hostile: only regular files and directories are written
(links, devices and other special files are skipped and listed), never
outside DEST, with modes 0644/0755.`,
		Example: `  airlock cp ./data fix-auth:/workspace/data
  airlock cp fix-auth:/workspace/out.log .`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return flagErrorf("give a source and a destination, one of them RUN:/PATH")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cpRun(cmd.Context(), f, args[0], args[1])
		},
	}
}

// remotePath splits "RUN:/path". A local path with a colon can be written
// ./a:b.
func remotePath(arg string) (ref, p string, ok bool) {
	ref, p, ok = strings.Cut(arg, ":")
	if !ok || ref == "" || strings.Contains(ref, "/") {
		return "", "", false
	}
	return ref, p, true
}

func cpRun(ctx context.Context, f *Factory, src, dest string) error {
	srcRef, srcPath, srcRemote := remotePath(src)
	destRef, destPath, destRemote := remotePath(dest)
	switch {
	case srcRemote && destRemote:
		return flagErrorf("cp copies between this machine and a sandbox, not between two sandboxes")
	case !srcRemote && !destRemote:
		return flagErrorf("one of %q and %q must be RUN:/PATH", src, dest)
	}
	ref, cpath := srcRef, srcPath
	if destRemote {
		ref, cpath = destRef, destPath
	}
	if !path.IsAbs(cpath) {
		return flagErrorf("%s:%s: give an absolute path in the sandbox, such as /workspace/%s", ref, cpath, strings.TrimPrefix(cpath, "./"))
	}
	cpath = path.Clean(cpath)
	r, m, err := f.runAndManager(ctx, ref)
	if err != nil {
		return err
	}
	ex, err := sandboxFiles(ctx, m, r)
	if err != nil {
		return err
	}
	if destRemote {
		return copyIn(ctx, f, ex, r, src, cpath)
	}
	return copyOut(ctx, f, ex, r, cpath, dest)
}

// sandboxFiles is the engine, for a run whose container still exists
// (running or not).
func sandboxFiles(ctx context.Context, m *run.Manager, r *store.Run) (sandbox.Execer, error) {
	ex, ok := m.Engine.(sandbox.Execer)
	if !ok {
		return nil, errors.New("this container engine cannot copy files")
	}
	if _, err := m.Engine.Inspect(ctx, r.Container); errors.Is(err, sandbox.ErrNotFound) {
		return nil, fmt.Errorf("run %s has no sandbox any more (it was removed)", r.ID)
	} else if err != nil {
		return nil, err
	}
	return ex, nil
}

func copyIn(ctx context.Context, f *Factory, ex sandbox.Execer, r *store.Run, src, dest string) error {
	if _, err := os.Lstat(src); err != nil {
		return fmt.Errorf("cp: %w", err)
	}
	// Into an existing directory the copy keeps its name; otherwise it is
	// named dest, in dest's parent.
	dir, name := dest, filepath.Base(filepath.Clean(src))
	if info, err := ex.Stat(ctx, r.Container, dest); errors.Is(err, sandbox.ErrNotFound) || err == nil && !info.Mode.IsDir() {
		dir, name = path.Dir(dest), path.Base(dest)
	} else if err != nil {
		return err
	}
	if _, err := ex.Stat(ctx, r.Container, dir); errors.Is(err, sandbox.ErrNotFound) {
		return fmt.Errorf("cp: %s does not exist in run %s's sandbox", dir, r.ID)
	}
	uid, gid := run.User(f.UID, f.GID)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.Create(pw, src, name, uid, gid)) }()
	err := ex.CopyTo(ctx, r.Container, dir, pr)
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("cp %s to %s:%s: %w", src, r.ID, dest, err)
	}
	return nil
}

func copyOut(ctx context.Context, f *Factory, ex sandbox.Execer, r *store.Run, src, dest string) error {
	dir, rename := dest, ""
	if info, err := os.Stat(dest); err != nil || !info.IsDir() {
		dir, rename = filepath.Dir(dest), filepath.Base(dest)
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return fmt.Errorf("cp: %s is not a directory on this machine", dir)
	}
	rc, err := ex.CopyFrom(ctx, r.Container, src)
	if err != nil {
		return err
	}
	defer rc.Close()
	skipped, err := archive.Extract(rc, dir, rename)
	for _, s := range skipped {
		fmt.Fprintf(f.IO.ErrOut, "skipped %s: a %s (cp copies regular files and directories only)\n", s.Name, s.Reason)
	}
	if err != nil {
		return fmt.Errorf("cp %s:%s to %s: %w", r.ID, src, dest, err)
	}
	return nil
}
