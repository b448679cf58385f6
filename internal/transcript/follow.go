package transcript

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// PollInterval is how often Follow looks for more of the file.
const PollInterval = 100 * time.Millisecond

// Follow calls fn with each line of the file at path (without its newline)
// as the file grows, like tail -f. It returns nil after a result line, or
// once done reports true and everything written until then has been read;
// done is how the caller says the writer has gone (the container exited).
// The file need not exist yet. Polling rather than inotify keeps it working
// on every filesystem a run directory may sit on.
//
// The file is the agent's: it is opened as untrusted.Open does (a link, a
// FIFO or a device is an error, at once), read from its last MaxWindow
// bytes at most, and a line longer than MaxLine is dropped unread.
func Follow(ctx context.Context, path string, done func() bool, fn func(line []byte) error) error {
	return FollowFile(ctx, func() (*os.File, error) {
		f, _, err := untrusted.OpenTail(path, MaxWindow)
		return f, err
	}, done, fn)
}

// FollowFile is Follow for a file open opens, which must refuse what
// untrusted.Open refuses and may start at a later line (untrusted.OpenIn,
// then untrusted.SeekLines).
func FollowFile(ctx context.Context, open func() (*os.File, error), done func() bool, fn func(line []byte) error) error {
	return FollowFileIdle(ctx, open, done, fn, nil)
}

// FollowFileIdle is FollowFile that calls idle, if not nil, each time it
// has read all there is so far and is about to wait for more: the moment
// to flush buffered output, so a reader sees each line once it is read.
func FollowFileIdle(ctx context.Context, open func() (*os.File, error), done func() bool, fn func(line []byte) error, idle func() error) error {
	f, err := waitOpen(ctx, open, done)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()

	rd := bufio.NewReaderSize(f, 64*1024)
	lastReopen := time.Now()
	var partial []byte // a line still being written
	long := false      // the line being read is over MaxLine: drop it
	finishing := false // done reported true: read to the end, then stop
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk, err := rd.ReadSlice('\n')
		if !long && len(partial)+len(chunk) > MaxLine {
			long, partial = true, nil
		}
		if !long {
			partial = append(partial, chunk...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil && long:
			long = false
			continue
		case err == nil:
			line := partial[:len(partial)-1]
			partial = nil
			if ferr := fn(line); ferr != nil {
				return ferr
			}
			if isResult(line) {
				return nil
			}
			continue
		case !errors.Is(err, io.EOF):
			return fmt.Errorf("follow %s: %w", f.Name(), err)
		}
		// At the end of what the file holds: one replaced whole by a
		// newer copy of itself (an engine whose mounts are copies syncs
		// them by renaming a new file into place) goes on in the new one,
		// from the same offset.
		if time.Since(lastReopen) >= reopenEvery || finishing {
			lastReopen = time.Now()
			if nf := reopened(f, open); nf != nil {
				f.Close()
				f = nf
				rd.Reset(f)
				continue
			}
		}
		if finishing {
			if len(partial) > 0 {
				// The writer is gone; this line will never be finished.
				return fn(partial)
			}
			return nil
		}
		// Ask before the last read, not after: whatever was written before
		// done turned true is then certain to be read.
		if done() {
			finishing = true
			continue
		}
		if idle != nil {
			if err := idle(); err != nil {
				return err
			}
		}
		if err := sleep(ctx, PollInterval); err != nil {
			return err
		}
	}
}

// reopenEvery is how often a follower at the end of its file checks
// whether the file was replaced.
const reopenEvery = time.Second

// reopened opens the file again and, when it is another file than f (it
// was replaced), returns it positioned where f was read to; else nil.
// A replacement shorter than that is not a copy of f grown: it is read
// from its start.
func reopened(f *os.File, open func() (*os.File, error)) *os.File {
	nf, err := open()
	if err != nil {
		return nil
	}
	old, err1 := f.Stat()
	cur, err2 := nf.Stat()
	if err1 != nil || err2 != nil || os.SameFile(old, cur) {
		nf.Close()
		return nil
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil || pos > cur.Size() {
		pos = 0
	}
	if _, err := nf.Seek(pos, io.SeekStart); err != nil {
		nf.Close()
		return nil
	}
	return nf
}

// waitOpen opens the file, waiting for it to appear. A file that is still
// missing when done reports true is an error wrapping fs.ErrNotExist.
func waitOpen(ctx context.Context, open func() (*os.File, error), done func() bool) (*os.File, error) {
	for {
		finished := done()
		f, err := open()
		switch {
		case err == nil:
			return f, nil
		case !errors.Is(err, fs.ErrNotExist) || finished:
			return nil, fmt.Errorf("follow transcript: %w", err)
		}
		if err := sleep(ctx, PollInterval); err != nil {
			return nil, err
		}
	}
}

func isResult(line []byte) bool {
	if !bytes.Contains(line, []byte(`"result"`)) {
		return false // most lines: skip the full parse
	}
	evs, err := ParseLine(line)
	return err == nil && evs[0].Kind == KindResult
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
