package sandbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

var _ Execer = (*Incus)(nil)

// instanceInit reads back the init spec an instance was made with (its
// user, working directory and environment), from its raw.lxc.
func (i *Incus) instanceInit(ctx context.Context, id string) (incusInitSpec, string, error) {
	var inst incusInstance
	if err := i.c.get(ctx, instancePath(id), &inst); err != nil {
		return incusInitSpec{}, "", err
	}
	prefix := "lxc.environment = " + incusInitEnv + "="
	for _, line := range strings.Split(inst.Config["raw.lxc"], "\n") {
		if enc, ok := strings.CutPrefix(line, prefix); ok {
			data, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				break
			}
			var s incusInitSpec
			if err := json.Unmarshal(data, &s); err != nil {
				break
			}
			return s, i.incusStatus(ctx, inst), nil
		}
	}
	return incusInitSpec{}, "", fmt.Errorf("instance %s was not made by airlock (it has no airlock init)", id)
}

// Exec runs spec in the running instance id. The command starts as the
// container's root and drops to spec.User through this binary (incusOp),
// with the instance's environment, plus spec.Env.
func (i *Incus) Exec(ctx context.Context, id string, spec ExecSpec) (int, error) {
	if len(spec.Cmd) == 0 {
		return 0, errors.New("exec: no command given")
	}
	if err := checkUser(spec.User); err != nil {
		return 0, fmt.Errorf("exec in instance %s: %w", id, err)
	}
	is, status, err := i.instanceInit(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("exec in instance %s: %w", id, err)
	}
	if status != "Running" {
		return 0, fmt.Errorf("exec in instance %s: it is not running (%s)", id, strings.ToLower(status))
	}
	workdir := spec.WorkDir
	if workdir == "" {
		workdir = is.WorkDir
	}
	env := map[string]string{}
	for _, kv := range append(append([]string(nil), is.Env...), spec.Env...) {
		if name, val, ok := strings.Cut(kv, "="); ok && name != "" {
			env[name] = val
		}
	}
	if spec.TTY && env["TERM"] == "" {
		env["TERM"] = "xterm"
	}
	argv := append([]string{BinaryPath, IncusInitCommand, "run", spec.User, workdir, "--"}, spec.Cmd...)
	return i.execStreams(ctx, id, incusExec{Argv: argv, Env: env}, spec)
}

// execStreams runs e over Incus' exec API (as the instance's root unless e
// says otherwise), copying the streams as spec says; spec.Cmd, User,
// WorkDir and Env are e's business. Without a terminal Incus hands over
// one websocket per stream (0, 1, 2) and a control socket; with one, a
// single websocket carries the terminal both ways and the control socket
// takes resizes. The command starts once all are connected.
func (i *Incus) execStreams(ctx context.Context, id string, e incusExec, spec ExecSpec) (int, error) {
	req := map[string]any{
		"command": e.Argv, "environment": e.Env, "interactive": spec.TTY,
		"wait-for-websocket": true, "record-output": false, "user": e.UID, "group": e.GID,
	}
	if e.Cwd != "" {
		req["cwd"] = e.Cwd
	}
	if spec.TTY && spec.Size != (TermSize{}) {
		req["width"], req["height"] = spec.Size.Width, spec.Size.Height
	}
	op, err := i.c.async(ctx, http.MethodPost, instancePath(id)+"/exec", req)
	if err != nil {
		return 0, fmt.Errorf("exec in instance %s: %w", id, err)
	}
	fds, _ := op.Metadata["fds"].(map[string]any)
	secret := func(fd string) string { s, _ := fds[fd].(string); return s }
	cancelOp := func() {
		i.c.sync(context.WithoutCancel(ctx), http.MethodDelete, "/1.0/operations/"+url.PathEscape(op.ID), nil, nil)
	}
	// The streams live as long as the command; on cancellation the
	// operation is cancelled, which ends them.
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	names := []string{"control", "0", "1", "2"}
	if spec.TTY {
		names = []string{"control", "0"}
	}
	conns := map[string]*websocket.Conn{}
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	for _, fd := range names {
		if secret(fd) == "" {
			cancelOp()
			return 0, fmt.Errorf("exec in instance %s: incus gave no secret for stream %s", id, fd)
		}
		u := "ws://incus/1.0/operations/" + url.PathEscape(op.ID) + "/websocket?secret=" + url.QueryEscape(secret(fd))
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: i.c.hc})
		if err != nil {
			cancelOp()
			return 0, fmt.Errorf("exec in instance %s: connect stream %s: %w", id, fd, err)
		}
		c.SetReadLimit(-1)
		conns[fd] = c
	}

	var outputs sync.WaitGroup
	var mu sync.Mutex // Stdout and Stderr may be one writer
	// A stream ends with a "barrier": an empty text message. With a
	// terminal, Incus ends the operation only once the client answered with
	// its own.
	copyOut := func(c *websocket.Conn, w io.Writer) {
		defer outputs.Done()
		for {
			typ, data, err := c.Read(sctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageText {
				if spec.TTY {
					c.Write(sctx, websocket.MessageText, []byte{})
				}
				return
			}
			mu.Lock()
			w.Write(data)
			mu.Unlock()
		}
	}
	outputs.Add(1)
	if spec.TTY {
		go copyOut(conns["0"], orDiscard(spec.Stdout))
	} else {
		outputs.Add(1)
		go copyOut(conns["1"], orDiscard(spec.Stdout))
		go copyOut(conns["2"], orDiscard(spec.Stderr))
	}
	in := conns["0"]
	go func() {
		if spec.Stdin != nil {
			buf := make([]byte, 32<<10)
			for {
				n, err := spec.Stdin.Read(buf)
				if n > 0 {
					if in.Write(sctx, websocket.MessageBinary, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					break
				}
			}
		}
		if !spec.TTY {
			// The end of the input: Incus closes the command's stdin.
			in.Close(websocket.StatusNormalClosure, "")
		}
	}()
	if spec.TTY && spec.Resize != nil {
		ctl := conns["control"]
		go func() {
			for {
				select {
				case <-sctx.Done():
					return
				case sz, ok := <-spec.Resize:
					if !ok {
						return
					}
					msg, _ := json.Marshal(map[string]any{"command": "window-resize",
						"args": map[string]string{"width": strconv.Itoa(int(sz.Width)), "height": strconv.Itoa(int(sz.Height))}})
					ctl.Write(sctx, websocket.MessageText, msg)
				}
			}
		}()
	}

	finished := make(chan struct{})
	go func() { outputs.Wait(); close(finished) }()
	type result struct {
		op  incusOperation
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := i.c.wait(sctx, op.ID, -1)
		done <- result{o, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		cancelOp()
		return 0, fmt.Errorf("exec in instance %s: %w", id, ctx.Err())
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
	}
	if res.err != nil {
		// Incus turns the shell's "cannot execute" and "not found" statuses
		// into failures of the operation; they are the command's.
		var ie *IncusError
		if errors.As(res.err, &ie) {
			switch ie.Message {
			case "Command not executable":
				return 126, nil
			case "Command not found":
				return 127, nil
			}
		}
		return 0, fmt.Errorf("exec in instance %s: %w", id, res.err)
	}
	code, ok := res.op.Metadata["return"].(float64)
	if !ok {
		return 0, fmt.Errorf("exec in instance %s: incus reported no exit status", id)
	}
	return int(code), nil
}

// runOp runs one of the init binary's file operations as the instance's
// user, and returns its exit status and output.
func (i *Incus) runOp(ctx context.Context, id string, args []string, stdin io.Reader, stdout io.Writer) (int, string, error) {
	is, status, err := i.instanceInit(ctx, id)
	if err != nil {
		return 0, "", err
	}
	if status != "Running" {
		return 0, "", fmt.Errorf("it is not running (%s): Incus reaches into running instances only", strings.ToLower(status))
	}
	user := strconv.Itoa(int(is.UID)) + ":" + strconv.Itoa(int(is.GID))
	argv := append([]string{BinaryPath, IncusInitCommand, args[0], user}, args[1:]...)
	var stderr bytes.Buffer
	code, err := i.execStreams(ctx, id, incusExec{Argv: argv, Env: map[string]string{}}, ExecSpec{Stdin: stdin, Stdout: stdout, Stderr: &limitedBuffer{b: &stderr, n: 4096}})
	return code, stderr.String(), err
}

// Stat describes path in the instance, as its user sees it.
func (i *Incus) Stat(ctx context.Context, id, p string) (PathInfo, error) {
	if source, rel, err := i.stoppedMount(ctx, id, p); err != nil {
		return PathInfo{}, fmt.Errorf("stat %s in instance %s: %w", p, id, err)
	} else if source != "" {
		info, err := statHost(source, rel)
		if err != nil {
			return PathInfo{}, fmt.Errorf("stat %s in instance %s: %w", p, id, err)
		}
		return info, nil
	}
	var out bytes.Buffer
	code, msg, err := i.runOp(ctx, id, []string{"stat", p}, nil, &limitedBuffer{b: &out, n: 64 << 10})
	if err != nil {
		return PathInfo{}, fmt.Errorf("stat %s in instance %s: %w", p, id, err)
	}
	if code == incusStatMissing {
		return PathInfo{}, fmt.Errorf("stat %s in instance %s: %w", p, id, ErrNotFound)
	}
	if code != 0 {
		return PathInfo{}, fmt.Errorf("stat %s in instance %s: %s", p, id, strings.TrimSpace(msg))
	}
	// Printed by a process of the agent's user: parse it strictly.
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	var st incusStat
	if err := dec.Decode(&st); err != nil {
		return PathInfo{}, fmt.Errorf("stat %s in instance %s: unreadable answer: %w", p, id, err)
	}
	return PathInfo{Name: path.Base(st.Name), Size: st.Size, Mode: os.FileMode(st.Mode), ModTime: time.Unix(0, st.ModTime), LinkTarget: st.Link}, nil
}

// CopyTo extracts the tar stream r into dir in the instance, as its user
// (so the files are the user's whatever the headers say).
func (i *Incus) CopyTo(ctx context.Context, id, dir string, r io.Reader) error {
	code, msg, err := i.runOp(ctx, id, []string{"untar", dir}, r, io.Discard)
	if err != nil {
		return fmt.Errorf("copy into %s in instance %s: %w", dir, id, err)
	}
	if code != 0 {
		return fmt.Errorf("copy into %s in instance %s: %s", dir, id, strings.TrimSpace(msg))
	}
	return nil
}

// CopyFrom returns path in the instance as a tar stream, made by a process
// of the instance's user: as hostile as the agent.
func (i *Incus) CopyFrom(ctx context.Context, id, p string) (io.ReadCloser, error) {
	// Fail early, with ErrNotFound, for a missing path.
	if _, err := i.Stat(ctx, id, p); err != nil {
		return nil, fmt.Errorf("copy %s out of instance %s: %w", p, id, err)
	}
	pr, pw := io.Pipe()
	if source, rel, err := i.stoppedMount(ctx, id, p); err != nil {
		return nil, fmt.Errorf("copy %s out of instance %s: %w", p, id, err)
	} else if source != "" {
		go func() { pw.CloseWithError(tarHost(pw, source, rel, path.Base(path.Clean(p)))) }()
		return pr, nil
	}
	go func() {
		code, msg, err := i.runOp(ctx, id, []string{"tar", p}, nil, pw)
		if err == nil && code != 0 {
			err = fmt.Errorf("copy %s out of instance %s: %s", p, id, strings.TrimSpace(msg))
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
