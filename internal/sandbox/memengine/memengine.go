// Package memengine is an in-memory sandbox.Engine for tests: containers are
// goroutines running a Program the test scripts (exit with code N after a
// while, write files into the mounts, honour or ignore SIGTERM, run out of
// memory), with the states, waits, stops, logs and refusals of a real
// engine. It passes sandboxtest.RunContractSuite, so code above the seam
// (internal/run) can be tested against it without a container engine. It
// isolates nothing: never use it outside tests.
package memengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// Program is what a container does once started; it returns the exit code.
// It must return soon after p.Killed() is closed.
type Program func(p *Proc) int

// Engine is the in-memory engine. Configure it before use.
type Engine struct {
	// Programs picks the program a container runs; nil, or a nil result,
	// runs Shell (the suite's small shell) on the spec's command.
	Programs func(spec sandbox.Spec) Program
	// Fail, when set, is asked before every operation (op is the method's
	// name, name the container's name, or the proxy's name for
	// CreateSandbox and RestartSandbox) and returns the error to fail it
	// with, or nil.
	Fail func(op, name string) error

	mu         sync.Mutex
	images     map[string]bool
	containers map[string]*container // by ID
	// remnants are what remains of containers Vanish took, by ID.
	remnants map[string]sandbox.Remnant
	next     int
	down     bool
}

// ProxyImage is the image of the engine's sandbox proxies; it always has it.
const ProxyImage = "memengine-proxy:1"

// New returns an engine holding the given images.
func New(images ...string) *Engine {
	e := &Engine{images: map[string]bool{ProxyImage: true}, containers: map[string]*container{}}
	for _, im := range images {
		e.images[im] = true
	}
	return e
}

type container struct {
	spec     sandbox.Spec
	id       string
	state    sandbox.State
	logs     bytes.Buffer
	started  bool
	done     chan struct{} // closed at the exit
	term     chan struct{} // closed on SIGTERM
	kill     chan struct{} // closed on SIGKILL
	killOnce sync.Once
	termOnce sync.Once
	oom      bool
}

// Kind is "memory".
func (e *Engine) Kind() string { return "memory" }

// SetDown makes every call fail as if the engine did not answer.
func (e *Engine) SetDown(down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down = down
}

// AddImage adds an image.
func (e *Engine) AddImage(ref string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.images[ref] = true
}

// SetStatus forces a container's status, as an engine outside airlock's
// control might (paused, dead, unknown).
func (e *Engine) SetStatus(name string, st sandbox.Status) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.find(name)
	if c == nil {
		return fmt.Errorf("set status of %s: %w", name, sandbox.ErrNotFound)
	}
	c.state.Status = st
	return nil
}

// SetDead makes a container dead, with the engine's account of why, as a
// real engine reports one that it lost.
func (e *Engine) SetDead(name, why string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.find(name)
	if c == nil {
		return fmt.Errorf("set status of %s: %w", name, sandbox.ErrNotFound)
	}
	c.state.Status, c.state.ExitCode, c.state.Why = sandbox.StatusDead, -1, why
	return nil
}

func (e *Engine) check(op, name string) error {
	e.mu.Lock()
	down := e.down
	e.mu.Unlock()
	if down {
		return fmt.Errorf("%s %s: %w", op, name, sandbox.ErrEngineUnreachable)
	}
	if e.Fail != nil {
		if err := e.Fail(op, name); err != nil {
			return fmt.Errorf("%s %s: %w", op, name, err)
		}
	}
	return nil
}

// find looks a container up by ID or name; e.mu is held.
func (e *Engine) find(idOrName string) *container {
	if c, ok := e.containers[idOrName]; ok {
		return c
	}
	for _, c := range e.containers {
		if c.spec.Name == idOrName {
			return c
		}
	}
	return nil
}

// get finds a container for op; Fail is asked with its name.
func (e *Engine) get(op, idOrName string) (*container, error) {
	e.mu.Lock()
	c := e.find(idOrName)
	e.mu.Unlock()
	name := idOrName
	if c != nil {
		name = c.spec.Name
	}
	if err := e.check(op, name); err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("%s %s: %w", op, idOrName, sandbox.ErrNotFound)
	}
	return c, nil
}

// Ping answers unless the engine is down.
func (e *Engine) Ping(context.Context) error { return e.check("Ping", "") }

// ImageExists reports whether ref was added.
func (e *Engine) ImageExists(_ context.Context, ref string) (bool, error) {
	if err := e.check("ImageExists", ref); err != nil {
		return false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.images[ref], nil
}

// Create checks spec as a real backend does and records the container.
func (e *Engine) Create(_ context.Context, spec sandbox.Spec) (string, error) {
	if err := e.check("Create", spec.Name); err != nil {
		return "", err
	}
	if err := sandbox.CheckUser(spec.User); err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	for _, m := range spec.Mounts {
		if !filepath.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			return "", fmt.Errorf("create container %s: mount %s -> %s: both paths must be absolute", spec.Name, m.Source, m.Target)
		}
		if err := sandbox.CheckNotEngineSocket(m.Source, sandbox.EngineSockets("")); err != nil {
			return "", fmt.Errorf("create container %s: %w", spec.Name, err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.images[spec.Image] {
		return "", fmt.Errorf("create container %s: image %s not found: %w", spec.Name, spec.Image, sandbox.ErrNotFound)
	}
	if e.find(spec.Name) != nil {
		return "", fmt.Errorf("create container %s: the name is already in use", spec.Name)
	}
	e.next++
	id := fmt.Sprintf("mem%08d", e.next)
	e.containers[id] = &container{
		spec: spec,
		id:   id,
		state: sandbox.State{ID: id, Name: spec.Name, Image: spec.Image, Status: sandbox.StatusCreated,
			Labels: maps.Clone(spec.Labels)},
		done: make(chan struct{}),
	}
	return id, nil
}

// Start runs the container's program in a goroutine. Starting an exited
// container runs it again, as engines do.
func (e *Engine) Start(_ context.Context, id string) error {
	c, err := e.get("Start", id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch c.state.Status {
	case sandbox.StatusRunning, sandbox.StatusPaused:
		return nil
	case sandbox.StatusExited:
		c.done = make(chan struct{})
	case sandbox.StatusCreated:
	default:
		return fmt.Errorf("start container %s: it is %s", id, c.state.Status)
	}
	c.term, c.kill = make(chan struct{}), make(chan struct{})
	c.termOnce, c.killOnce = sync.Once{}, sync.Once{}
	c.oom = false
	c.started = true
	c.state.Status = sandbox.StatusRunning
	c.state.StartedAt = time.Now()
	c.state.FinishedAt = time.Time{}
	c.state.ExitCode = 0
	c.state.OOMKilled = false
	prog := e.program(c.spec)
	p := &Proc{Spec: c.spec, e: e, c: c, term: c.term, kill: c.kill}
	done := c.done
	go func() {
		code := prog(p)
		e.mu.Lock()
		defer e.mu.Unlock()
		select {
		case <-c.kill:
			code = 137
		default:
		}
		if c.oom {
			code = 137
		}
		c.state.ExitCode = code
		c.state.OOMKilled = c.oom
		c.state.FinishedAt = time.Now()
		if c.state.Status == sandbox.StatusRunning || c.state.Status == sandbox.StatusPaused {
			c.state.Status = sandbox.StatusExited
		}
		close(done)
	}()
	return nil
}

func (e *Engine) program(spec sandbox.Spec) Program {
	if e.Programs != nil {
		if p := e.Programs(spec); p != nil {
			return p
		}
	}
	return Shell
}

// Wait blocks until the container exits, before Start too.
func (e *Engine) Wait(ctx context.Context, id string) (int, error) {
	c, err := e.get("Wait", id)
	if err != nil {
		return 0, err
	}
	e.mu.Lock()
	done := c.done
	e.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return 0, fmt.Errorf("wait for container %s: %w", id, ctx.Err())
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return c.state.ExitCode, nil
}

// Inspect reports the container's state.
func (e *Engine) Inspect(_ context.Context, id string) (sandbox.State, error) {
	c, err := e.get("Inspect", id)
	if err != nil {
		return sandbox.State{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := c.state
	st.Labels = maps.Clone(c.state.Labels)
	return st, nil
}

// Stop delivers SIGTERM, then SIGKILL after timeout.
func (e *Engine) Stop(ctx context.Context, id string, timeout time.Duration) error {
	c, err := e.get("Stop", id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	running := c.state.Status == sandbox.StatusRunning || c.state.Status == sandbox.StatusPaused
	done, term, kill := c.done, c.term, c.kill
	e.mu.Unlock()
	if !running || term == nil {
		return nil
	}
	c.termOnce.Do(func() { close(term) })
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	c.killOnce.Do(func() { close(kill) })
	<-done
	return nil
}

// Remove kills and forgets the container; a missing one is not an error.
func (e *Engine) Remove(_ context.Context, id string) error {
	if err := e.check("Remove", id); err != nil {
		return err
	}
	e.mu.Lock()
	c := e.find(id)
	if c == nil {
		e.mu.Unlock()
		return nil
	}
	delete(e.containers, c.id)
	kill, done := c.kill, c.done
	e.mu.Unlock()
	if kill != nil {
		c.killOnce.Do(func() { close(kill) })
		<-done
	}
	return nil
}

// List returns the containers carrying every given label.
func (e *Engine) List(_ context.Context, labels map[string]string) ([]sandbox.State, error) {
	if err := e.check("List", ""); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []sandbox.State
	for _, c := range e.containers {
		match := true
		for k, v := range labels {
			if c.state.Labels[k] != v {
				match = false
			}
		}
		if match {
			st := c.state
			st.Labels = maps.Clone(c.state.Labels)
			out = append(out, st)
		}
	}
	return out, nil
}

// Vanish removes a container as someone else would, behind airlock's
// back, and leaves what remains of it (as a Kubernetes pod's Secret and
// policies outlive it): Remnants reports it until RemoveRemnant.
func (e *Engine) Vanish(ctx context.Context, id string) error {
	c, err := e.get("Vanish", id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	st := c.state
	e.mu.Unlock()
	if err := e.Remove(ctx, id); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.remnants == nil {
		e.remnants = map[string]sandbox.Remnant{}
	}
	e.remnants[st.ID] = sandbox.Remnant{
		State:   sandbox.State{ID: st.ID, Name: st.Name, Labels: maps.Clone(st.Labels), Status: sandbox.StatusDead, Why: "it vanished"},
		Objects: []string{"remnant of " + st.Name},
	}
	return nil
}

// Remnants reports what remains of the containers Vanish took.
func (e *Engine) Remnants(context.Context) ([]sandbox.Remnant, error) {
	if err := e.check("Remnants", ""); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []sandbox.Remnant
	for _, r := range e.remnants {
		out = append(out, r)
	}
	return out, nil
}

// RemoveRemnant forgets what remains of a vanished container.
func (e *Engine) RemoveRemnant(_ context.Context, r sandbox.Remnant) error {
	if err := e.check("RemoveRemnant", r.Name); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.remnants, r.ID)
	return nil
}

// Logs copies what the container's program wrote.
func (e *Engine) Logs(_ context.Context, id string, w io.Writer) error {
	c, err := e.get("Logs", id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	data := bytes.Clone(c.logs.Bytes())
	e.mu.Unlock()
	_, err = w.Write(data)
	return err
}

// CreateSandbox creates and starts the proxy, then the agent, with the
// airlock binary at sandbox.BinaryPath in both; on failure it removes what
// it made.
func (e *Engine) CreateSandbox(ctx context.Context, spec sandbox.SandboxSpec) (sandbox.Sandbox, error) {
	if err := e.check("CreateSandbox", spec.Proxy.Name); err != nil {
		return sandbox.Sandbox{}, err
	}
	proxy, err := e.startProxy(ctx, spec)
	if err != nil {
		return sandbox.Sandbox{}, err
	}
	agent := spec.Agent
	agent.Mounts = append(append([]sandbox.Mount(nil), agent.Mounts...),
		sandbox.Mount{Source: spec.Binary, Target: sandbox.BinaryPath, ReadOnly: true})
	// As on the real engines, the relay runs the agent's command.
	agent.Cmd = sandbox.RelayCommand(agent.Cmd, spec.RelayFlags)
	id, err := e.Create(ctx, agent)
	if err == nil && spec.AgentReady != nil {
		err = spec.AgentReady(ctx)
	}
	if err == nil {
		err = e.Start(ctx, id)
	}
	if err != nil {
		e.Remove(context.WithoutCancel(ctx), agent.Name)
		e.Remove(context.WithoutCancel(ctx), spec.Proxy.Name)
		return sandbox.Sandbox{}, err
	}
	return sandbox.Sandbox{Agent: id, Proxy: proxy}, nil
}

// RestartSandbox starts a new proxy and the existing agent again.
func (e *Engine) RestartSandbox(ctx context.Context, spec sandbox.SandboxSpec) (sandbox.Sandbox, error) {
	if err := e.check("RestartSandbox", spec.Proxy.Name); err != nil {
		return sandbox.Sandbox{}, err
	}
	proxy, err := e.startProxy(ctx, spec)
	if err != nil {
		return sandbox.Sandbox{}, err
	}
	if err := e.Start(ctx, spec.Agent.Name); err != nil {
		e.Remove(context.WithoutCancel(ctx), spec.Proxy.Name)
		return sandbox.Sandbox{}, err
	}
	st, err := e.Inspect(ctx, spec.Agent.Name)
	return sandbox.Sandbox{Agent: st.ID, Proxy: proxy}, err
}

func (e *Engine) startProxy(ctx context.Context, spec sandbox.SandboxSpec) (string, error) {
	p := spec.Proxy
	e.Remove(ctx, p.Name) // an earlier leg's
	id, err := e.Create(ctx, sandbox.Spec{
		Name: p.Name, Image: ProxyImage, Cmd: sandbox.ProxyCommand(), Env: p.Env,
		User: p.User, Labels: p.Labels, ExtraHosts: p.ExtraHosts, Limits: p.Limits,
		Mounts: []sandbox.Mount{
			{Source: spec.Binary, Target: sandbox.BinaryPath, ReadOnly: true},
			{Source: p.ConfigDir, Target: sandbox.ProxyConfigDir},
		},
	})
	if err != nil {
		return "", fmt.Errorf("create the egress proxy: %w", err)
	}
	if err := e.Start(ctx, id); err != nil {
		e.Remove(context.WithoutCancel(ctx), id)
		return "", fmt.Errorf("start the egress proxy: %w", err)
	}
	return id, nil
}

// RemoveProxy removes a sandbox's proxy.
func (e *Engine) RemoveProxy(ctx context.Context, name string) error {
	return e.Remove(ctx, name)
}

// Proc is a running container, as its program sees it.
type Proc struct {
	Spec sandbox.Spec
	e    *Engine
	c    *container
	term <-chan struct{}
	kill <-chan struct{}
}

// Terminated is closed when the container is sent SIGTERM.
func (p *Proc) Terminated() <-chan struct{} { return p.term }

// Killed is closed when the container is killed; the program must return.
func (p *Proc) Killed() <-chan struct{} { return p.kill }

// Sleep waits d; it returns false early if the container is killed.
func (p *Proc) Sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-p.kill:
		return false
	}
}

// OOM marks the container as killed for running out of memory; the program
// should return at once.
func (p *Proc) OOM() {
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	p.c.oom = true
}

// Log appends to the container's output.
func (p *Proc) Log(s string) {
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	p.c.logs.WriteString(s)
}

// HostPath maps a container path onto the host through the mounts, and
// says whether that mount is writable.
func (p *Proc) HostPath(cpath string) (string, bool, error) {
	cpath = path.Clean(cpath)
	best := -1
	for i, m := range p.Spec.Mounts {
		t := path.Clean(m.Target)
		if (cpath == t || strings.HasPrefix(cpath, t+"/")) && (best < 0 || len(t) > len(p.Spec.Mounts[best].Target)) {
			best = i
		}
	}
	if best < 0 {
		return "", false, fmt.Errorf("%s: not on a mount (the in-memory engine has no root file system)", cpath)
	}
	m := p.Spec.Mounts[best]
	rel := strings.TrimPrefix(cpath, path.Clean(m.Target))
	return filepath.Join(m.Source, filepath.FromSlash(rel)), !m.ReadOnly, nil
}

// WriteFile writes a file at a container path, owned by the container's
// user as a real engine's would be.
func (p *Proc) WriteFile(cpath string, data []byte) error {
	host, writable, err := p.HostPath(cpath)
	if err != nil {
		return err
	}
	if !writable {
		return fmt.Errorf("%s: read-only file system", cpath)
	}
	uid, gid, ok := user(p.Spec.User)
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(host, data, 0o644); err != nil {
		return err
	}
	if ok {
		if err := os.Lchown(host, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return err
		}
	}
	return nil
}

// Env is the value of an environment variable of the container.
func (p *Proc) Env(name string) string {
	for _, kv := range p.Spec.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

func user(s string) (int, int, bool) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	return uid, gid, ok && err1 == nil && err2 == nil
}

// ExecFunc runs a command in a running container: what the test scripts
// for sandbox.Execer.Exec. It returns the exit status.
type ExecFunc func(p *Proc, spec sandbox.ExecSpec) int

// WithExec is the engine with the Execer capability, its commands run by
// fn; the plain Engine lacks it, as an engine without exec would.
func (e *Engine) WithExec(fn ExecFunc) *ExecEngine { return &ExecEngine{Engine: e, fn: fn} }

// ExecEngine is an Engine that can run commands in its containers.
type ExecEngine struct {
	*Engine
	fn ExecFunc
}

func (e *ExecEngine) running(op, id string) (*Proc, error) {
	c, err := e.get(op, id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.state.Status != sandbox.StatusRunning {
		return nil, fmt.Errorf("%s %s: the container is %s, not running", op, id, c.state.Status)
	}
	return &Proc{Spec: c.spec, e: e.Engine, c: c, term: c.term, kill: c.kill}, nil
}

// Exec runs fn for a running container.
func (e *ExecEngine) Exec(_ context.Context, id string, spec sandbox.ExecSpec) (int, error) {
	p, err := e.running("Exec", id)
	if err != nil {
		return 0, err
	}
	return e.fn(p, spec), nil
}

// Stat describes a path on one of the container's mounts.
func (e *ExecEngine) Stat(_ context.Context, id, cpath string) (sandbox.PathInfo, error) {
	p, err := e.running("Stat", id)
	if err != nil {
		return sandbox.PathInfo{}, err
	}
	host, _, err := p.HostPath(cpath)
	if err != nil {
		return sandbox.PathInfo{}, fmt.Errorf("stat %s: %w", cpath, sandbox.ErrNotFound)
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return sandbox.PathInfo{}, fmt.Errorf("stat %s: %w", cpath, sandbox.ErrNotFound)
	}
	return sandbox.PathInfo{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}, nil
}

// CopyTo is not simulated.
func (e *ExecEngine) CopyTo(_ context.Context, id, dir string, _ io.Reader) error {
	return fmt.Errorf("copy into %s:%s: %w", id, dir, sandbox.ErrUnsupported)
}

// CopyFrom is not simulated.
func (e *ExecEngine) CopyFrom(_ context.Context, id, cpath string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("copy from %s:%s: %w", id, cpath, sandbox.ErrUnsupported)
}
