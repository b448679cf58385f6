// Package untrusted is the host's side of the trust boundary with the
// sandbox: it opens files the agent can write without being led elsewhere
// or made to wait, reads them within a limit, and makes strings the agent
// chose safe to show on a terminal or send in a notification.
//
// Every file under a run's workspace/, home/, log/, sock/ and out/
// directories, and in its caches, is the agent's: it can be a symbolic link
// to a host secret, a FIFO that blocks its reader forever, a device, or a
// sparse file of many gigabytes. Open refuses all but regular files, and
// the readers here never read more than their caller's limit.
package untrusted

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrNotRegular is returned (wrapped) for a path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is returned (wrapped) by ReadFile for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// Open opens path for reading if it is a regular file. It never follows a
// symbolic link in the last component and never blocks: O_NONBLOCK makes
// opening a FIFO return at once, and the file is then refused.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if err != nil {
		// O_NOFOLLOW answers ELOOP for a link, a socket ENXIO: say in
		// words what is there instead.
		if !errors.Is(err, fs.ErrNotExist) {
			if st, lerr := os.Lstat(path); lerr == nil && !st.Mode().IsRegular() {
				return nil, notRegular(path, st.Mode())
			}
		}
		return nil, err
	}
	return regular(f, path)
}

// regular returns f if it is a regular file, and closes it otherwise.
func regular(f *os.File, name string) (*os.File, error) {
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, notRegular(name, st.Mode())
	}
	return f, nil
}

func notRegular(path string, m fs.FileMode) error {
	return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("it is %s, %w", kind(m), ErrNotRegular)}
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file"
}

// ReadFile reads a regular file of at most max bytes. A longer file is an
// error wrapping ErrTooLarge, and only max+1 bytes of it are ever read.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: over %d bytes", ErrTooLarge, max)}
	}
	return data, nil
}

// Tail reads the last n bytes of a regular file (all of a shorter one). It
// seeks rather than reads its way there, so the file's size does not matter.
func Tail(path string, n int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := seekTail(f, n); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, n))
}

// OpenTail is Open, then SeekLines(f, max).
func OpenTail(path string, max int64) (f *os.File, skipped int64, err error) {
	if f, err = Open(path); err != nil {
		return nil, 0, err
	}
	if skipped, err = SeekLines(f, max); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, skipped, nil
}

// OpenIn opens rel under dir as Open does, and no symbolic link on the way
// may lead out of dir: for a file deep in a directory tree the agent owns
// (its home), where any directory on the path can be a link.
func OpenIn(dir, rel string) (*os.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		if st, lerr := root.Lstat(rel); lerr == nil && !st.Mode().IsRegular() && st.Mode()&fs.ModeSymlink == 0 {
			return nil, notRegular(rel, st.Mode())
		}
		return nil, err
	}
	return regular(f, filepath.Join(dir, rel))
}

// SeekLines moves f so that at most max bytes are left to read, starting
// at a line: a transcript larger than max is read from the first whole line
// in its last max bytes. skipped is how many bytes were passed over (0 for
// a file within the limit).
func SeekLines(f *os.File, max int64) (skipped int64, err error) {
	if skipped, err = seekTail(f, max); err != nil || skipped == 0 {
		return skipped, err
	}
	// Drop the partial line the seek landed in, reading no more than the
	// limit: a file with no newline at all has nothing left to give.
	br := bufio.NewReaderSize(io.LimitReader(f, max), 64<<10)
	n := int64(0)
	for {
		chunk, err := br.ReadSlice('\n')
		n += int64(len(chunk))
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil { // EOF: no line starts in the window
			n = max
		}
		break
	}
	if _, err := f.Seek(skipped+n, io.SeekStart); err != nil {
		return 0, err
	}
	return skipped + n, nil
}

// seekTail moves f to its last n bytes, returning the offset it moved to.
func seekTail(f *os.File, n int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	off := st.Size() - n
	if off <= 0 {
		return 0, nil
	}
	return f.Seek(off, io.SeekStart)
}

// ReadLine reads one line from br, newline included when there is one. A
// line longer than max bytes is read to its end but not kept: it comes back
// as nil with long set, so memory stays bounded whatever the agent wrote.
// err is io.EOF at the end of the input (possibly with a last, unterminated
// line).
func ReadLine(br *bufio.Reader, max int) (line []byte, long bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			if len(line)+len(chunk) > max {
				long, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, long, err
	}
}
