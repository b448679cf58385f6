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
	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// Limits of a copy out of a sandbox: it must not be able to fill the host's
// disk or inode table.
const (
	defaultCpMaxSize    = "1g"
	cpMaxEntries        = 1_000_000
	cpMaxEntriesWritten = "1,000,000"
)

type cpOptions struct {
	MaxSize     string
	AllProjects bool
}

func newCpCmd(f *Factory) *cobra.Command {
	var opts cpOptions
	cmd := &cobra.Command{
		Use:   "cp SRC RUN:/PATH | RUN:/PATH DEST",
		Short: "Copy files into or out of a run's sandbox",
		Long: `Copy a file or directory between this machine and a run's sandbox, like
docker cp: into an existing directory the copy keeps its name, otherwise it
takes the destination's name. Copying in needs the run's sandbox running;
copying out works while its container exists, running or not.

Copies into the sandbox are owned by the agent's user. What comes out of a
sandbox is treated as hostile, and each thing left out is listed on stderr:
- files and directories are written with modes 0644/0755, never outside DEST;
  devices, fifos and sockets are left out, and so are links leading out of
  the copy (absolute, or climbing out with ..);
- every git repository in the copy (.git, submodules, bare repositories)
  keeps its history, but its config is replaced by a minimal one and its
  hooks, info/attributes, commondir, worktrees and alternates are left out,
  so no git command in DEST runs anything the agent chose; a .git file is
  kept only when it points to a repository inside the copy;
- at most --max-size bytes and ` + cpMaxEntriesWritten + ` entries: a larger copy fails
  and leaves nothing (the copy is assembled in a hidden directory beside it
  and moved into place only when complete).`,
		Example: `  airlock cp ./data fix-auth:/workspace/data
  airlock cp fix-auth:/workspace/out.log .
  airlock cp --max-size 4g fix-auth:/workspace ./fix-auth-workspace`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return flagErrorf("give a source and a destination, one of them RUN:/PATH")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			maxSize, err := config.ParseSize(opts.MaxSize)
			if err != nil || maxSize <= 0 {
				return flagErrorf("--max-size: give a size such as 512m or 2g, not %q", opts.MaxSize)
			}
			return cpRun(cmd.Context(), f, args[0], args[1], maxSize, opts.AllProjects)
		},
	}
	cmd.Flags().StringVar(&opts.MaxSize, "max-size", defaultCpMaxSize, "the most a copy out of a sandbox may write, such as 512m or 2g")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
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

func cpRun(ctx context.Context, f *Factory, src, dest string, maxSize int64, allProjects bool) error {
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
	r, m, err := f.runAndManager(ctx, ref, allProjects)
	if err != nil {
		return err
	}
	ex, st, err := sandboxFiles(ctx, m, r)
	if err != nil {
		return err
	}
	if destRemote {
		if st.Status != sandbox.StatusRunning {
			return notRunning(r)
		}
		return copyIn(ctx, f, ex, r, src, cpath)
	}
	return copyOut(ctx, f, ex, r, cpath, dest, maxSize)
}

// notRunning explains why a copy into r's stopped sandbox is refused: the
// engine would accept it, but no agent will ever see it.
func notRunning(r *store.Run) error {
	hint := fmt.Sprintf("continue its work in a new run with `airlock run --resume %s`", r.ID)
	if r.Persistent {
		hint = fmt.Sprintf("bring it back with `airlock start %s`", r.ID)
	}
	return fmt.Errorf("cp: run %s is not running (%s): copying into a sandbox needs it running; %s", r.ID, r.Status, hint)
}

// sandboxFiles is the engine and the state of the run's container, for a
// run whose container still exists (running or not).
func sandboxFiles(ctx context.Context, m *run.Manager, r *store.Run) (sandbox.Execer, sandbox.State, error) {
	ex := m.Caps.Exec
	if ex == nil {
		return nil, sandbox.State{}, m.Caps.Missing("copy files into or out of a sandbox")
	}
	st, err := m.Engine.Inspect(ctx, r.Container)
	if errors.Is(err, sandbox.ErrNotFound) {
		return nil, st, fmt.Errorf("run %s has no sandbox any more (it was removed)", r.ID)
	} else if err != nil {
		return nil, st, err
	}
	return ex, st, nil
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

func copyOut(ctx context.Context, f *Factory, ex sandbox.Execer, r *store.Run, src, dest string, maxSize int64) error {
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
	skipped, err := archive.Extract(rc, dir, archive.Options{Rename: rename, MaxBytes: maxSize, MaxEntries: cpMaxEntries})
	if errors.Is(err, archive.ErrTooLarge) {
		return fmt.Errorf("cp %s:%s: the copy is larger than --max-size %s or has more than %s entries; nothing was written to %s (give a larger --max-size, or copy less)",
			r.ID, src, config.FormatSize(maxSize), cpMaxEntriesWritten, dest)
	}
	if err != nil {
		return fmt.Errorf("cp %s:%s to %s: %s", r.ID, src, dest, untrusted.Line(err.Error()))
	}
	for _, s := range skipped {
		fmt.Fprintf(f.IO.ErrOut, "left out %s: %s\n", untrusted.Line(s.Name), untrusted.Line(s.Reason))
	}
	return nil
}
