package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// incusExec is a command for execStreams.
type incusExec struct {
	Argv []string
	Env  map[string]string
	UID  uint32
	GID  uint32
	Cwd  string // "" is the instance's default
}

// Files in an instance, through Incus' file API (as the instance's root,
// owners in the instance's ids).

// pushFile writes a regular file, a directory or a symlink (content is the
// link's target) at path in the instance.
func (i *Incus) pushFile(ctx context.Context, name, path, kind string, uid, gid uint32, mode uint32, content io.Reader, size int64) error {
	h := http.Header{
		"X-Incus-Type":  {kind},
		"X-Incus-Uid":   {strconv.FormatUint(uint64(uid), 10)},
		"X-Incus-Gid":   {strconv.FormatUint(uint64(gid), 10)},
		"X-Incus-Mode":  {fmt.Sprintf("%04o", mode)},
		"X-Incus-Write": {"overwrite"},
		"Content-Type":  {"application/octet-stream"},
	}
	if content == nil {
		content = strings.NewReader("")
		size = 0
	}
	p := filePath(name, path)
	// A body that cannot be read again is sent once.
	seeker, rewind := content.(io.Seeker)
	return i.files.do(ctx, name, rewind, func() error {
		if rewind {
			if _, err := seeker.Seek(0, io.SeekStart); err != nil {
				return err
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://incus"+p, content)
		if err != nil {
			return err
		}
		req.Header = h
		req.ContentLength = size
		resp, err := i.c.hc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return i.c.unreachable(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return decodeIncusError(http.MethodPost, p, resp)
		}
		_, err = readEnvelope(http.MethodPost, p, resp)
		return err
	})
}

// filePath is the file API's path of path in instance name.
func filePath(name, path string) string {
	return instancePath(name) + "/files?path=" + url.QueryEscape(path)
}

// getFile asks the file API for path in instance name; the caller closes
// the response's body.
func (i *Incus) getFile(ctx context.Context, name, path string) (*http.Response, error) {
	var resp *http.Response
	err := i.files.do(ctx, name, true, func() (err error) {
		resp, err = i.c.raw(ctx, http.MethodGet, filePath(name, path), nil, nil)
		return err
	})
	return resp, err
}

// statFile says what path is in the instance: "file", "directory",
// "symlink", or "" when it does not exist.
func (i *Incus) statFile(ctx context.Context, name, path string) (string, error) {
	resp, err := i.getFile(ctx, name, path)
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.Header.Get("X-Incus-Type"), nil
}

// readFile reads a regular file of the instance, at most max bytes; a
// missing file wraps ErrNotFound.
func (i *Incus) readFile(ctx context.Context, name, path string, max int64) ([]byte, error) {
	data, typ, err := i.readRaw(ctx, name, path, max)
	if err != nil {
		return nil, err
	}
	if typ != "file" {
		return nil, fmt.Errorf("%s is a %s, not a file", path, typ)
	}
	return data, nil
}

// readRaw reads what the file API returns for path, at most max bytes: a
// file's content or a symlink's target, with the kind ("file", "symlink",
// "directory").
func (i *Incus) readRaw(ctx context.Context, name, path string, max int64) ([]byte, string, error) {
	resp, err := i.getFile(ctx, name, path)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, "", err
	}
	if int64(len(data)) > max {
		return nil, "", fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return data, resp.Header.Get("X-Incus-Type"), nil
}
