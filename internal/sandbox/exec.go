package sandbox

import (
	"context"
	"io"
	"os"
	"time"
)

// Execer runs commands in, and copies files into and out of, a running
// sandbox. It is apart from Engine because only the interactive commands
// (attach, exec, cp, tmux) need it.
type Execer interface {
	// Exec runs a command in the running container id and returns its exit
	// status once it ends and its output has been copied.
	Exec(ctx context.Context, id string, spec ExecSpec) (int, error)
	// Stat describes a path in the container; errors wrap ErrNotFound.
	Stat(ctx context.Context, id, path string) (PathInfo, error)
	// CopyTo extracts the tar stream r into dir, an existing directory in
	// the container. Entries keep the owners in their headers.
	CopyTo(ctx context.Context, id, dir string, r io.Reader) error
	// CopyFrom returns path (file or directory) in the container as a tar
	// stream whose entries are named after path's last element. The stream
	// comes from the container: treat it as hostile.
	CopyFrom(ctx context.Context, id, path string) (io.ReadCloser, error)
}

// ExecSpec is a command to run in a running container.
type ExecSpec struct {
	Cmd     []string
	User    string // "uid:gid"
	WorkDir string
	Env     []string // added to the container's environment
	// TTY gives the command a terminal; its output then arrives on Stdout
	// alone.
	TTY bool
	// Stdin is fed to the command; nil means none.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Size is the terminal's size at the start (TTY only; zero: the
	// engine's default).
	Size TermSize
	// Resize delivers the terminal's new sizes while the command runs.
	Resize <-chan TermSize
}

// TermSize is a terminal's size in character cells.
type TermSize struct {
	Width, Height uint
}

// PathInfo is what Stat reports.
type PathInfo struct {
	Name       string
	Size       int64
	Mode       os.FileMode
	ModTime    time.Time
	LinkTarget string
}
