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
	"sync"

	"github.com/coder/websocket"
)

// incusExec is a command for execStream.
type incusExec struct {
	Argv []string
	Env  map[string]string
	UID  uint32
	GID  uint32
	Cwd  string // "" is the instance's default
}

// execStream runs a command in a running instance with no input, copies its
// stdout and stderr to the writers as they come (either may be nil) and
// returns its exit code. Incus hands a non-interactive command's streams
// over one websocket each (stdin, stdout, stderr) plus a control socket, and
// starts the command once all of them are connected.
func (i *Incus) execStream(ctx context.Context, name string, e incusExec, stdout, stderr io.Writer) (int, error) {
	body := map[string]any{
		"command":            e.Argv,
		"environment":        e.Env,
		"interactive":        false,
		"wait-for-websocket": true,
		"record-output":      false,
		"user":               e.UID,
		"group":              e.GID,
	}
	if e.Cwd != "" {
		body["cwd"] = e.Cwd
	}
	path := "/1.0/instances/" + url.PathEscape(name) + "/exec"
	op, err := i.c.async(ctx, http.MethodPost, path, body)
	if err != nil {
		return 0, fmt.Errorf("exec in instance %s: %w", name, err)
	}
	fds, _ := op.Metadata["fds"].(map[string]any)
	secret := func(fd string) string { s, _ := fds[fd].(string); return s }
	if secret("0") == "" || secret("1") == "" || secret("2") == "" || secret("control") == "" {
		i.c.sync(context.WithoutCancel(ctx), http.MethodDelete, "/1.0/operations/"+url.PathEscape(op.ID), nil, nil)
		return 0, fmt.Errorf("exec in instance %s: incus gave no stream secrets (%v)", name, op.Metadata)
	}

	// The streams live as long as the command, not as ctx: on cancellation
	// the operation is cancelled below, which closes them.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	dial := func(fd string) (*websocket.Conn, error) {
		u := "ws://incus/1.0/operations/" + url.PathEscape(op.ID) + "/websocket?secret=" + url.QueryEscape(secret(fd))
		conn, _, err := websocket.Dial(sctx, u, &websocket.DialOptions{HTTPClient: i.c.hc})
		if err != nil {
			return nil, fmt.Errorf("exec in instance %s: connect stream %s: %w", name, fd, err)
		}
		conn.SetReadLimit(-1)
		return conn, nil
	}
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	byFD := map[string]*websocket.Conn{}
	for _, fd := range []string{"control", "0", "1", "2"} {
		c, err := dial(fd)
		if err != nil {
			i.c.sync(context.WithoutCancel(ctx), http.MethodDelete, "/1.0/operations/"+url.PathEscape(op.ID), nil, nil)
			return 0, err
		}
		conns = append(conns, c)
		byFD[fd] = c
	}
	// No input: stdin ends at once.
	byFD["0"].Close(websocket.StatusNormalClosure, "")

	var wg sync.WaitGroup
	var mu sync.Mutex // the writers may be one
	copyStream := func(c *websocket.Conn, w io.Writer) {
		defer wg.Done()
		for {
			_, data, err := c.Read(sctx)
			if err != nil {
				return // closed: the command's end, or cancellation
			}
			if w != nil && len(data) > 0 {
				mu.Lock()
				w.Write(data)
				mu.Unlock()
			}
		}
	}
	wg.Add(3)
	go copyStream(byFD["1"], stdout)
	go copyStream(byFD["2"], stderr)
	go copyStream(byFD["control"], nil)

	type result struct {
		op  incusOperation
		err error
	}
	done := make(chan result, 1)
	go func() {
		op, err := i.c.wait(sctx, op.ID, -1)
		done <- result{op, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		i.c.sync(sctx, http.MethodDelete, "/1.0/operations/"+url.PathEscape(op.ID), nil, nil)
		cancel()
		wg.Wait()
		return 0, fmt.Errorf("exec in instance %s: %w", name, ctx.Err())
	}
	// The output streams close after the command ends; all of it is
	// written before returning.
	byFD["control"].Close(websocket.StatusNormalClosure, "")
	wg.Wait()
	if res.err != nil {
		return 0, fmt.Errorf("exec in instance %s: %w", name, res.err)
	}
	switch code := res.op.Metadata["return"].(type) {
	case float64:
		return int(code), nil
	default:
		return 0, fmt.Errorf("exec in instance %s: incus reported no exit code (%v)", name, res.op.Metadata)
	}
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
	p := "/1.0/instances/" + url.PathEscape(name) + "/files?path=" + url.QueryEscape(path)
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
}

// statFile says what path is in the instance: "file", "directory",
// "symlink", or "" when it does not exist.
func (i *Incus) statFile(ctx context.Context, name, path string) (string, error) {
	resp, err := i.c.raw(ctx, http.MethodGet, "/1.0/instances/"+url.PathEscape(name)+"/files?path="+url.QueryEscape(path), nil, nil)
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
	resp, err := i.c.raw(ctx, http.MethodGet, "/1.0/instances/"+url.PathEscape(name)+"/files?path="+url.QueryEscape(path), nil, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if t := resp.Header.Get("X-Incus-Type"); t != "file" {
		return nil, fmt.Errorf("%s is a %s, not a file", path, t)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return data, nil
}
