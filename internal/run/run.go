// Package run is the run lifecycle, top to bottom: a validated request
// becomes a repository copy, a hardened container running the agent, a log,
// and finally the agent's work fetched safely into the user's repository,
// ready for review and merge.
//
// No long-lived airlock process is needed for a run to finish: the agent
// writes its log through a mount, and every command that looks at a run
// first reconciles its record with the engine and the files (Reconcile).
package run

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/notify"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
	"github.com/airlock-dev/airlock/internal/untrusted"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Paths inside the agent's container.
const (
	containerWorkspace = "/workspace"
	containerHome      = "/home/agent"
	containerLogDir    = "/airlock/log"
	containerPrompt    = "/airlock/prompt.md"
	containerOut       = "/airlock/out"
)

// Labels on every engine object a run creates, so `clean` finds orphans.
const (
	LabelRun     = "airlock.run"
	LabelProject = "airlock.project"
	LabelRole    = "airlock.role"
)

// Request is everything a run needs, already validated and resolved from
// config, prompt and flags.
type Request struct {
	// Checked says the caller ran Check on this very request just before,
	// with nothing (a person's confirmation) in between: Start does not
	// repeat it.
	Checked      bool
	Project      string // absolute root of the user's repository
	Name         string // validated run name
	PromptSource string // the prompt file's path, or "inline"
	Prompt       string // the prompt text given to the agent
	BaseBranch   string
	Image        string
	// Agent is the coding agent to run; nil is the default (Claude Code).
	Agent agent.Agent
	// Bring names the agent's own configuration to copy into the run's
	// home from BringFrom, the user's home (a profile's bring).
	Bring     []string
	BringFrom string
	Model     string
	MaxTurns  int
	Env       []string // NAME=value; never credentials: those are in Egress.Auth
	Limits    sandbox.Limits
	Egress    Egress

	// Kind is KindHeadless (the agent without a terminal, the default) or
	// KindShell (the agent's own terminal UI, in tmux, for people to attach
	// to).
	Kind string
	// Resume continues an earlier run's conversation: its agent state is
	// restored into this run's home and the agent resumes its session.
	Resume *store.Run
	// Persistent keeps the container after the agent exits; `start` brings
	// it back.
	Persistent bool
	// Budget stops the agent when it is spent.
	Budget Budget
	// Caches are shared dependency caches mounted into the sandbox
	// ("npm", "go", "pip").
	Caches []string
	// Here mounts the live project directory instead of a copy (an explicit
	// opt-in of `shell --here`).
	Here bool
	// Notify says where to send word when the run ends or waits for input.
	Notify notify.Config
	// DiskBytes is the run's disk quota; zero means none.
	DiskBytes int64
	// Runtime is the OCI runtime of the agent's container and of its
	// harvest, such as "runsc" (gVisor); empty means the engine's default.
	// The egress proxy always runs under the default: it needs a network.
	Runtime string
	// Mounts are the user's own mounts (sandbox.mounts), already checked
	// and resolved (CheckMount).
	Mounts []sandbox.Mount
	// Setup are shell commands run in the sandbox before the agent
	// (setup.go).
	Setup []string
	// Ports are the sandbox's TCP ports forwarded to the host's loopback
	// (ports.go).
	Ports []Port
}

// agent is the request's agent: the default when none is named.
func (req Request) agent() agent.Agent {
	if req.Agent == nil {
		return agent.MustLookup("")
	}
	return req.Agent
}

// agentOf is the agent a run was started with.
func agentOf(r *store.Run) agent.Agent { return agent.MustLookup(r.Agent) }

// ParserOf reads the transcript of a run's agent into events.
func ParserOf(r *store.Run) func([]byte) ([]transcript.Event, error) {
	return agentOf(r).ParseLine
}

// Kinds of run.
const (
	KindHeadless = "headless"
	KindShell    = "shell"
)

// Budget limits a run; zero values mean no limit.
type Budget struct {
	MaxCostUSD float64
	Timeout    time.Duration
}

// Manager runs and tracks runs. Its fields are its dependencies.
type Manager struct {
	Store  *store.Store
	Engine sandbox.Engine
	// Caps are the engine's optional capabilities (sandbox.CapsOf).
	Caps sandbox.Caps
	// UID and GID the agent runs as: the invoking user's, or the image's
	// unprivileged user when airlock itself runs as root.
	UID, GID int
	Now      func() time.Time
	// Progress receives one line per lifecycle step, for people.
	Progress io.Writer
	// Self finds the static airlock binary the sandbox runs (the proxy, the
	// relay, the hooks); nil means this very executable.
	Self func() (string, error)
	// ResolveSecret resolves an injected credential's source again when a
	// persistent run restarts (the values are never stored).
	ResolveSecret ResolveFunc
	// CloudCredentials fetches a run's cloud model credentials again: as
	// they near expiry while it runs, and when a persistent run restarts.
	// Nil: they are never refreshed.
	CloudCredentials CloudFetcher
}

func (m *Manager) self() (string, error) {
	if m.Self != nil {
		return m.Self()
	}
	return staticSelf()
}

// User is the container user for a host uid/gid: never root. When airlock
// runs as root, the agent runs as the image's own unprivileged user.
func User(uid, gid int) (int, int) {
	if uid == 0 {
		return 1000, 1000
	}
	return uid, gid
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) progress(format string, args ...any) {
	if m.Progress != nil {
		fmt.Fprintf(m.Progress, format+"\n", args...)
	}
}

// NewID makes a run ID: the name and 8 random hex digits.
func NewID(name string) string {
	var b [4]byte
	rand.Read(b[:])
	return name + "-" + hex.EncodeToString(b[:])
}

// Start creates the run and starts its agent, then returns without waiting.
// The record is written first, so a crash at any later point leaves a run
// that `ls` shows and `rm` can finish. If a step fails, everything made so far
// is removed again and the record is dropped: a failed start changes nothing.
func (m *Manager) Start(ctx context.Context, req Request) (*store.Run, error) {
	if !req.Checked {
		if err := m.Check(ctx, req); err != nil {
			return nil, err
		}
	}

	id := NewID(req.Name)
	r := &store.Run{
		ID:         id,
		Name:       req.Name,
		Project:    req.Project,
		Status:     store.StatusCreating,
		Branch:     workspace.Branch(id),
		BaseBranch: req.BaseBranch,
		Prompt:     req.PromptSource,
		Agent:      req.agent().Name(),
		Model:      req.Model,
		MaxTurns:   req.MaxTurns,
		Image:      req.Image,
		Cloud:      req.Egress.cloudSettings(),
		Container:  ContainerName(id),
		SessionID:  agent.NewSessionID(),
		CreatedAt:  m.now(),
		CreatorPID: os.Getpid(),
		Kind:       req.Kind,
		Persistent: req.Persistent,
		MaxCostUSD: req.Budget.MaxCostUSD,
		Caches:     req.Caches,
		Here:       req.Here,
		DiskBytes:  req.DiskBytes,
		Runtime:    req.Runtime,
		Mounts:     mountStrings(req.Mounts),
		Setup:      req.Setup,
		Ports:      portStrings(req.Ports),
	}
	if r.Kind == "" {
		r.Kind = KindHeadless
	}
	if req.Budget.Timeout > 0 {
		r.Timeout = req.Budget.Timeout.String()
		r.Deadline = r.CreatedAt.Add(req.Budget.Timeout)
	}
	if req.Resume != nil {
		r.ResumedFrom = req.Resume.ID
		r.SessionID = req.Resume.SessionID
		if continuesWork(req) {
			r.BaseBranch = req.Resume.Branch
		}
	}
	if err := m.Store.Create(r); err != nil {
		return nil, err
	}
	run, err := m.create(ctx, r, req)
	if err != nil {
		m.undoCreate(context.WithoutCancel(ctx), r)
		return nil, err
	}
	return run, nil
}

// imageRefer is an engine whose pods pull an image under another name (the
// Kubernetes engine with a registry configured).
type imageRefer interface {
	ImageRef(ref string) string
}

// Check validates what a run needs beyond its request, creating nothing:
// the engine answers, the image is there, this airlock binary can serve as
// the proxy, and the base (for a resumed run, the earlier run's work) is in
// the project. Start checks again; callers check first, so that a person
// is asked to confirm only a run that can start.
func (m *Manager) Check(ctx context.Context, req Request) error {
	if err := m.Engine.Ping(ctx); err != nil {
		return err
	}
	if err := sandbox.CheckRuntime(ctx, m.Engine, req.Runtime); err != nil {
		return err
	}
	if from := req.Resume; from != nil && agentOf(from).Name() != req.agent().Name() {
		return fmt.Errorf("run %s was %s's conversation; %s cannot continue it (leave out --agent, or start a new run)", from.ID, agentOf(from).Title(), req.agent().Title())
	}
	if len(req.Bring) > 0 {
		if _, ok := req.agent().(agent.Bringer); !ok {
			return fmt.Errorf("the profile brings %s, but %s has no configuration airlock can bring in", strings.Join(req.Bring, ", "), req.agent().Title())
		}
		if !filepath.IsAbs(req.BringFrom) {
			return fmt.Errorf("the profile brings %s from your home, but HOME is not set", strings.Join(req.Bring, ", "))
		}
	}
	if ok, err := m.Engine.ImageExists(ctx, req.Image); err != nil {
		return err
	} else if !ok {
		hint := "build it with `airlock image build`"
		if !strings.HasPrefix(req.Image, image.Repo(req.agent())+":") && !strings.HasPrefix(req.Image, image.ProjectRepoPrefix) {
			hint = "pull or build it (`airlock image build` builds airlock's own image), or name another in [image] name, --image or the prompt's image:"
		}
		if r, ok := m.Engine.(imageRefer); ok && r.ImageRef(req.Image) != req.Image {
			return fmt.Errorf("image %s is neither on the cluster's nodes nor in the registry the pods pull it from (%s): push it there with `airlock image build`", req.Image, r.ImageRef(req.Image))
		}
		if m.Engine.Kind() == sandbox.KindKubernetes {
			// The nodes report their images a little after they get them.
			return fmt.Errorf("image %s is not on the cluster's nodes (as they last reported, up to a minute ago): build it with `airlock image build`, then load it into the nodes or set [engine.kubernetes] registry (docs/kubernetes.md)", req.Image)
		}
		return fmt.Errorf("image %s not found in the container engine: %s", req.Image, hint)
	}
	if !req.Here {
		if _, _, err := m.base(ctx, req); err != nil {
			return err
		}
	}
	if err := checkPorts(req.Ports); err != nil {
		return err
	}
	_, err := m.self()
	return err
}

// continuesWork reports whether a run continues an earlier run's work, not
// just its conversation: the conversation refers to the edits the earlier
// run made, so its copy must have them. A --here run left its edits in the
// project itself, and a --here run works there too.
func continuesWork(req Request) bool {
	return req.Resume != nil && !req.Resume.Here && !req.Here
}

// base is the commit a run's copy starts from, and the snapshot of
// uncommitted changes it starts with: for a resumed run, where the earlier
// run left its work (its branch head, and what it had not committed).
func (m *Manager) base(ctx context.Context, req Request) (commit, snapshot string, err error) {
	if !continuesWork(req) {
		commit, err = workspace.ResolveBase(ctx, req.Project, req.BaseBranch)
		return commit, "", err
	}
	from := req.Resume
	if err := workBroughtBack(from); err != nil {
		return "", "", err
	}
	if commit, err = workspace.ResolveBase(ctx, req.Project, from.Head); err != nil {
		return "", "", fmt.Errorf("cannot resume run %s: its work (commit %s, branch %s) is no longer in %s: %w", from.ID, shortSHA(from.Head), from.Branch, req.Project, err)
	}
	return commit, from.Uncommitted, nil
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func (m *Manager) create(ctx context.Context, r *store.Run, req Request) (*store.Run, error) {
	dir := m.Store.RunDir(r.ID)
	uid, gid := User(m.UID, m.GID)

	// The run's copy of the repository is made while the sandbox is
	// created, and the agent starts once it is there (AgentReady). --here:
	// the agent works in the project itself, no copy.
	copied := func(context.Context) error { return nil }
	if !req.Here {
		base, snapshot, err := m.base(ctx, req)
		if err != nil {
			return nil, err
		}
		dest := filepath.Join(dir, "workspace")
		// The agent's container mounts it from its creation on.
		if err := os.MkdirAll(dest, 0o755); err != nil {
			return nil, fmt.Errorf("create workspace %s: %w", dest, err)
		}
		m.progress("Copying %s (%s) to the run's own repository…", req.Project, r.BaseBranch)
		copyCtx, cancelCopy := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			created, err := workspace.Create(copyCtx, workspace.CreateOptions{
				Repo:        req.Project,
				Base:        base,
				Uncommitted: snapshot,
				ID:          r.ID,
				Dest:        dest,
				UID:         uid,
				GID:         gid,
			})
			if err == nil {
				_, err = m.Store.Update(r.ID, func(r *store.Run) error {
					r.BaseCommit = created.BaseCommit
					return nil
				})
			}
			done <- err
		}()
		wait := sync.OnceValue(func() error { return <-done })
		// Whatever ends create, the copy is over when it returns: a
		// failed run is removed, copy and all.
		defer func() {
			cancelCopy()
			wait()
		}()
		copied = func(context.Context) error { return wait() }
	}

	if err := prepareRunDir(dir, req.Prompt, uid, gid); err != nil {
		return nil, err
	}
	if err := writeNotifyConfig(dir, req.Notify); err != nil {
		return nil, err
	}
	if req.Resume != nil {
		if err := m.restoreSession(req.Resume, r, uid, gid); err != nil {
			return nil, err
		}
	}
	if err := m.seedAgent(r, req, uid, gid); err != nil {
		return nil, err
	}
	for _, item := range req.Bring {
		// Check made sure the agent can.
		if err := req.agent().(agent.Bringer).Bring(item, req.BringFrom, filepath.Join(dir, "home"), uid, gid); err != nil {
			return nil, err
		}
	}
	if err := saveEgress(dir, req.Egress); err != nil {
		return nil, err
	}
	opts := agent.Options{
		Model:      req.Model,
		MaxTurns:   req.MaxTurns,
		SessionID:  r.SessionID,
		Resume:     req.Resume != nil,
		PromptPath: containerPrompt,
		LogPath:    containerLogDir + "/" + agentLog,
		StderrPath: containerLogDir + "/" + agentStderr,
	}
	ag := req.agent()
	command := ag.Command
	if r.Kind == KindShell {
		command = func(o agent.Options) []string { return shellCommand(ag, o) }
	}
	cmd := command(opts)
	if req.Persistent && m.Engine.Kind() == sandbox.KindKubernetes {
		// A pod cannot be started again: each start is a new one.
		m.progress("Note: on Kubernetes a persistent run keeps its workspace and home between starts on a volume of its own, but not what is installed elsewhere in its container (each start is a new pod from the image).")
	}
	if req.Persistent {
		resumed := opts
		resumed.Resume = true
		cmd = restartable(ag, cmd, command(resumed), r.SessionID)
	}
	cmd, setupMounts, err := m.withSetup(r, cmd)
	if err != nil {
		return nil, err
	}
	spec := sandbox.Spec{
		Name:    r.Container,
		Image:   req.Image,
		Cmd:     cmd,
		Env:     append(ag.Env(opts), req.Env...),
		User:    fmt.Sprintf("%d:%d", uid, gid),
		WorkDir: containerWorkspace,
		Mounts: []sandbox.Mount{
			{Source: filepath.Join(dir, "workspace"), Target: containerWorkspace},
			{Source: filepath.Join(dir, "home"), Target: containerHome},
			{Source: filepath.Join(dir, "log"), Target: containerLogDir},
			{Source: filepath.Join(dir, "prompt.md"), Target: containerPrompt, ReadOnly: true},
			{Source: filepath.Join(dir, "passwd"), Target: "/etc/passwd", ReadOnly: true},
			{Source: filepath.Join(dir, "group"), Target: "/etc/group", ReadOnly: true},
		},
		Tmpfs:   []sandbox.Tmpfs{{Target: "/tmp", SizeBytes: 1 << 30, Exec: true}},
		Labels:  m.labels(r, "agent"),
		Limits:  req.Limits,
		Runtime: r.Runtime,
	}
	if req.Persistent {
		// Where mounts are copies (Kubernetes), the next leg finds these
		// as this one leaves them, without copying them in again.
		spec.Mounts[0].Persist, spec.Mounts[1].Persist = true, true
	}
	if req.Here {
		spec.Mounts[0].Source = req.Project
		// The project is the user's, who may change it between legs:
		// each leg gets it afresh.
		spec.Mounts[0].Persist = false
	}
	if m.Engine.Kind() == sandbox.KindKubernetes {
		// On one machine the host measures the run's directories against
		// the quota (Supervise); in a cluster they are the pod's, and the
		// kubelet holds it to its ephemeral-storage limit.
		spec.Limits.DiskBytes = req.DiskBytes
	}
	mounts, err := m.cacheMounts(r, req.Caches, uid, gid)
	if err != nil {
		return nil, err
	}
	spec.Mounts = append(append(append(spec.Mounts, mounts...), req.Mounts...), setupMounts...)
	flags := budgetFlags(req.Budget)
	if m.Caps.Ports == nil {
		// The relay serves the ports on the socket directory; an engine
		// that dials them itself reaches the agent's loopback directly.
		flags = append(flags, portFlags(req.Ports)...)
	}
	if r.Kind != KindShell && !req.Here {
		// The agent's container bundles the work itself once the agent has
		// exited, which spares the harvest its own container (harvest).
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: filepath.Join(dir, "out"), Target: containerOut})
		flags = append(flags, bundleFlags(r)...)
	}
	sb, err := m.sandboxSpec(r, req.Egress, spec, flags, uid, gid)
	if err != nil {
		return nil, err
	}
	m.warnIgnoredLimits(ctx, spec.Limits)
	runtime := ""
	if r.Runtime != "" {
		runtime = " (runtime " + r.Runtime + ")"
	}
	m.progress("Starting the egress proxy (%s) and the agent in container %s%s…", egressSummary(req.Egress), r.Container, runtime)
	sb.AgentReady = copied
	_, err = m.Engine.CreateSandbox(ctx, sb)
	m.removeSecrets(r)
	if cerr := copied(ctx); err != nil && cerr != nil {
		return nil, cerr // the copy's own error says more
	}
	if err != nil {
		return nil, fmt.Errorf("create the sandbox of run %s: %w", r.ID, err)
	}
	return m.Store.Update(r.ID, func(r *store.Run) error {
		r.Status = store.StatusRunning
		r.StartedAt = m.now()
		r.CreatorPID = 0
		return nil
	})
}

// undoCreate removes whatever a failed Start made, record included.
func (m *Manager) undoCreate(ctx context.Context, r *store.Run) {
	m.Engine.Remove(ctx, r.Container)
	m.stopProxy(ctx, r.ID)
	os.RemoveAll(m.Store.RunDir(r.ID))
}

const (
	agentLog    = "agent.jsonl"
	agentStderr = "agent.stderr"
)

// LogPath is the agent's stream-json transcript on the host.
func (m *Manager) LogPath(r *store.Run) string {
	return filepath.Join(m.Store.RunDir(r.ID), "log", agentLog)
}

// StderrPath is the agent's standard error on the host.
func (m *Manager) StderrPath(r *store.Run) string {
	return filepath.Join(m.Store.RunDir(r.ID), "log", agentStderr)
}

// ContainerName is the agent container's name for a run.
func ContainerName(id string) string { return "airlock-" + id }

func labels(r *store.Run, role string) map[string]string {
	return map[string]string{LabelRun: r.ID, LabelProject: r.Project, LabelRole: role}
}

// prepareRunDir makes the directories and files the container mounts, owned
// by the user the agent runs as. passwd and group give that uid a name and
// the home directory: tools such as Node's os.userInfo() and ssh fail
// without one, and the host uid need not match the image's user.
func prepareRunDir(dir, prompt string, uid, gid int) error {
	for _, d := range []string{"home", "log", "out"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return fmt.Errorf("prepare run directory: %w", err)
		}
	}
	files := map[string]string{
		"prompt.md": prompt,
		"passwd": fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nagent:x:%d:%d:airlock agent:%s:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
			uid, gid, containerHome),
		"group": fmt.Sprintf("root:x:0:\nagent:x:%d:\nnogroup:x:65534:\n", gid),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("prepare run directory: %w", err)
		}
	}
	// The run directory itself stays private to the user; the container
	// user must be able to reach the mounted paths inside it.
	for _, p := range []string{"home", "log", "out", "prompt.md"} {
		if err := os.Lchown(filepath.Join(dir, p), uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("prepare run directory: %w", err)
		}
	}
	return nil
}

// Reconcile brings a run's record up to date with the engine and the files:
// a finished container becomes succeeded or failed, with the agent's own
// summary. It is cheap and safe to call from many processes at once.
func (m *Manager) Reconcile(ctx context.Context, r *store.Run) (*store.Run, error) {
	if r.Removed() {
		return r, nil
	}
	switch r.Status {
	case store.StatusCreating:
		if r.CreatorPID != 0 && !processAlive(r.CreatorPID) {
			return m.Store.Update(r.ID, func(r *store.Run) error {
				if r.Status == store.StatusCreating {
					r.Status = store.StatusFailed
					r.Error = "airlock was interrupted while creating the run"
					r.FinishedAt = m.now()
				}
				return nil
			})
		}
		return r, nil
	case store.StatusRunning:
		if !r.StopRequested {
			// Whoever looks at a run enforces its budget: a run whose
			// supervisor is gone is still stopped once its time is up.
			if reason := m.overBudget(r); reason != "" {
				m.hostStop(ctx, r, StopReasonBudget, reason)
				cur, err := m.Store.Get(r.ID)
				if err != nil {
					return nil, err
				}
				r = cur
			}
		}
		st, err := m.Engine.Inspect(ctx, r.Container)
		switch {
		case errors.Is(err, sandbox.ErrNotFound):
			return m.finish(r, -1, m.now(), "the run's container disappeared before the agent finished")
		case err != nil:
			return nil, err
		}
		switch st.Status {
		case sandbox.StatusRunning, sandbox.StatusCreated:
			// Created: Start has not reached the engine yet.
			return r, nil
		case sandbox.StatusPaused:
			// Frozen from outside airlock: the agent has not finished, and
			// its clock runs on (hostStop stops a paused container too).
			return r, nil
		case sandbox.StatusExited:
			reason := ""
			if st.OOMKilled {
				reason = "the agent ran out of memory (raise [sandbox] memory)"
			}
			exited := st.FinishedAt
			if exited.IsZero() {
				exited = m.now()
			}
			return m.finish(r, st.ExitCode, exited, reason)
		case sandbox.StatusDead:
			// Its exit code means nothing: the engine lost the container.
			reason := "the container engine reports the run's container dead"
			if st.Why != "" {
				reason += ": " + untrusted.Line(st.Why)
			}
			return m.finish(r, -1, m.now(), reason)
		default:
			// Unknown: nothing to decide on. The record stays running, so
			// nothing of it is collected or removed early, and the next
			// look decides again.
			return r, nil
		}
	}
	return r, nil
}

// Collect is Reconcile, then, for a finished run, fetching its work into the
// user's repository (once).
func (m *Manager) Collect(ctx context.Context, r *store.Run) (*store.Run, error) {
	r, err := m.Reconcile(ctx, r)
	if err != nil {
		return nil, err
	}
	if !r.Status.Finished() || r.Harvested || r.Removed() {
		return r, nil
	}
	if r.StartedAt.IsZero() || r.Here {
		// Nothing to bring back: with --here the work is already in the
		// project, and an agent that never ran (creation was interrupted)
		// did none, in a copy that may be half made.
		return m.Store.Update(r.ID, func(r *store.Run) error {
			r.Harvested = true
			return nil
		})
	}
	return m.harvest(ctx, r)
}

// finish records a run's outcome. The host decides it from what the agent
// cannot touch: the engine's exit code, the proxy's meter and the host's
// clock. What the agent's transcript says of itself is kept beside it as
// its claim.
func (m *Manager) finish(r *store.Run, exitCode int, exitedAt time.Time, reason string) (*store.Run, error) {
	// On an engine whose mounts are copies, what the sandbox wrote comes
	// home first: the proxy's records go with its removal.
	m.syncAll(context.Background(), r)
	// The agent is done, so its proxy is too; its log stays.
	m.stopProxy(context.Background(), r.ID)
	mt := m.meter(r)
	claim := m.claim(r)
	allowed, denied := m.egressCounts(r)
	budget := budgetReason(r, mt, exitedAt)
	stderr := m.stderrTail(r)
	setupDone, setupFailure := m.setupOutcome(r, exitCode, mt)
	if reason == "" {
		reason = setupFailure
	}
	recorded := false // by this process: it notifies, once
	out, err := m.Store.Update(r.ID, func(r *store.Run) error {
		r.EgressAllowed, r.EgressDenied = allowed, denied
		if r.Status != store.StatusRunning {
			return nil // another process got here first
		}
		recorded = true
		r.SetupDone = r.SetupDone || setupDone
		r.FinishedAt = m.now()
		if exitCode >= 0 {
			r.ExitCode = &exitCode
		}
		r.Turns = mt.ModelRequests
		r.CostUSD = mt.CostUSD
		r.InputTokens = mt.InputTokens + mt.CacheCreationInputTokens + mt.CacheReadInputTokens
		r.OutputTokens = mt.OutputTokens
		r.AgentClaim = claim
		switch {
		case r.StopRequested:
			// The user, or the host for a budget or the disk quota,
			// stopped it; the record already says which and why.
			r.Status = store.StatusStopped
			if r.Error == "" {
				r.Error = "stopped by the user"
			}
		case budget != "":
			r.Status = store.StatusStopped
			r.StopReason = StopReasonBudget
			r.Error = budget
		case exitCode == 0:
			r.Status = store.StatusSucceeded
		default:
			r.Status = store.StatusFailed
			// The stderr tail is the agent's words: stored, printed and
			// sent as safe text only.
			r.Error = untrusted.Text(failureReason(reason, exitCode, stderr))
		}
		return nil
	})
	if err == nil && recorded && setupDone {
		m.markSetupDone(out)
	}
	if err == nil && recorded {
		m.notifyFinished(out)
	}
	return out, err
}

func failureReason(reason string, exitCode int, stderr string) string {
	switch {
	case reason != "":
		return reason
	case stderr != "":
		return fmt.Sprintf("the agent exited with status %d: %s", exitCode, stderr)
	default:
		return fmt.Sprintf("the agent exited with status %d", exitCode)
	}
}

// Summary is the agent's own account of a run, read from its transcript:
// for showing people what the agent said, never for deciding anything. The
// agent can rewrite the file, so it is read as untrusted (no links, no
// FIFOs, at most its last transcript.MaxWindow bytes).
func (m *Manager) Summary(r *store.Run) transcript.Summary {
	f, _, err := untrusted.OpenTail(m.LogPath(r), transcript.MaxWindow)
	if err != nil {
		return transcript.Summary{}
	}
	defer f.Close()
	sum, _ := transcript.SummarizeWith(f, agentOf(r).ParseLine)
	return sum
}

// claim is the agent's account of its run, or nil when its transcript has
// no result line.
func (m *Manager) claim(r *store.Run) *store.Claim {
	sum := m.Summary(r)
	if !sum.Final {
		return nil
	}
	return &store.Claim{Result: oneLine(sum.Subtype), IsError: sum.IsError, Turns: sum.Turns, CostUSD: sum.CostUSD}
}

// stderrTail is the end of the agent's standard error, for failure reasons:
// never through a link, never more than its last bytes, and made safe to
// print.
func (m *Manager) stderrTail(r *store.Run) string {
	data, err := untrusted.Tail(m.StderrPath(r), 400)
	if err != nil {
		return ""
	}
	return untrusted.Text(string(trimSpace(data)))
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && (b[0] == '\n' || b[0] == ' ') {
		b = b[1:]
	}
	return b
}

// Wait blocks until the run's agent has finished, supervising it meanwhile,
// then reconciles.
func (m *Manager) Wait(ctx context.Context, r *store.Run) (*store.Run, error) {
	for r.Status == store.StatusCreating {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		var err error
		if r, err = m.Store.Get(r.ID); err != nil {
			return nil, err
		}
		if r, err = m.Reconcile(ctx, r); err != nil {
			return nil, err
		}
	}
	if r.Status == store.StatusRunning {
		sctx, cancel := context.WithCancel(ctx)
		go m.Supervise(sctx, r)
		_, err := m.Engine.Wait(ctx, r.Container)
		cancel()
		if err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			return nil, fmt.Errorf("wait for run %s: %w", r.ID, err)
		}
	}
	// The agent is done. A busy engine fails a request now and then, and
	// one failed look must not fail a run that finished: Collect looks
	// again, from the record as it is then (the last try may have got
	// part of the way).
	for attempt := 1; ; attempt++ {
		got, err := m.Collect(ctx, r)
		if err == nil || attempt == collectTries || ctx.Err() != nil {
			return got, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * time.Second):
		}
		if cur, gerr := m.Store.Get(r.ID); gerr == nil {
			r = cur
		}
	}
}

// collectTries is how many times Wait collects a run whose agent is done
// before it gives up and reports the last error.
const collectTries = 3

// Stop stops a running agent; its work so far is kept and harvested.
func (m *Manager) Stop(ctx context.Context, r *store.Run, timeout time.Duration) (*store.Run, error) {
	if r.Status.Finished() {
		return r, nil
	}
	r, err := m.Store.Update(r.ID, func(r *store.Run) error {
		r.StopRequested = true
		if r.Status == store.StatusRunning && r.StopReason == "" {
			r.StopReason = StopReasonUser
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := m.Engine.Stop(ctx, r.Container, timeout); err != nil && !errors.Is(err, sandbox.ErrNotFound) {
		return nil, fmt.Errorf("stop run %s: %w", r.ID, err)
	}
	return m.Wait(ctx, r)
}

// harvest fetches a finished run's work into the user's repository. Git
// never runs on the host inside the copy, whose config and hooks the agent
// controls: the work is bundled in the sandbox, and the host fetches from
// that bundle with hardened options. The agent's own container bundles it
// as the agent exits; when the host stopped the run, or that bundle is
// missing or unusable (the agent tampered with it), a short-lived sandbox
// container (same image, no network) bundles the copy instead.
func (m *Manager) harvest(ctx context.Context, r *store.Run) (*store.Run, error) {
	var out *store.Run
	err := m.Store.Lock(r.ID, func() error {
		cur, err := m.Store.Get(r.ID)
		if err != nil {
			return err
		}
		if cur.Harvested || cur.Removed() {
			out = cur
			return nil
		}
		res, warning, herr := workspace.Imported{}, "", errNoBundle
		if cur.Status != store.StatusStopped {
			// Stopped by the host (the user, a budget): the copy is
			// harvested as the stop left it, whatever the agent put in
			// the bundle's place.
			res, warning, herr = m.importBundle(ctx, cur)
		}
		if herr != nil {
			res, warning, herr = m.harvestInSandbox(ctx, cur)
		}
		m.clearOut(cur)
		out, err = m.Store.Update(r.ID, func(r *store.Run) error {
			r.Harvested = true
			r.HarvestWarning = warning
			if herr != nil {
				r.HarvestError = herr.Error()
				return nil
			}
			r.Head = res.Head
			r.Uncommitted = res.Uncommitted
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// bundleFlags tell the relay in the agent's container to bundle the run's
// branch, leaving out the history the user's repository already has.
func bundleFlags(r *store.Run) []string {
	flags := []string{"--bundle-branch", r.Branch}
	if r.BaseCommit != "" {
		flags = append(flags, "--bundle-exclude", r.BaseCommit)
	}
	return flags
}

var errNoBundle = errors.New("no bundle from the agent's container")

// importBundle imports the bundle the agent's container made as the agent
// exited. It is checked exactly as the harvest container's: the report read
// as untrusted, the bundle never through a link, only the run's refs taken.
func (m *Manager) importBundle(ctx context.Context, r *store.Run) (workspace.Imported, string, error) {
	outDir := filepath.Join(m.Store.RunDir(r.ID), "out")
	h, err := workspace.ReadHarvest(outDir)
	if err != nil {
		return workspace.Imported{}, "", err
	}
	if h.Lost() {
		return workspace.Imported{}, "", errors.New(h.Error)
	}
	imp, err := workspace.Import(ctx, r.Project, filepath.Join(outDir, workspace.BundleFile), r.ID)
	return imp, h.Error, err
}

// clearOut empties the run's out directory, which the agent's container
// mounts: a later leg of the run must never find this leg's bundle there.
func (m *Manager) clearOut(r *store.Run) {
	outDir := filepath.Join(m.Store.RunDir(r.ID), "out")
	entries, _ := os.ReadDir(outDir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(outDir, e.Name()))
	}
}

// harvestInSandbox returns what was imported, and a warning when the branch
// came back but the snapshot of uncommitted changes did not.
func (m *Manager) harvestInSandbox(ctx context.Context, r *store.Run) (workspace.Imported, string, error) {
	dir := m.Store.RunDir(r.ID)
	uid, gid := User(m.UID, m.GID)
	outDir := filepath.Join(dir, "out")
	// Emptied, not replaced: the agent's container mounts this directory.
	m.clearOut(r)
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return workspace.Imported{}, "", fmt.Errorf("harvest run %s: %w", r.ID, err)
	}
	if err := os.Lchown(outDir, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return workspace.Imported{}, "", fmt.Errorf("harvest run %s: %w", r.ID, err)
	}
	name := ContainerName(r.ID) + "-harvest"
	m.Engine.Remove(ctx, name) // a leftover from an interrupted harvest
	id, err := m.Engine.Create(ctx, sandbox.Spec{
		Name:    name,
		Image:   r.Image,
		Cmd:     []string{"/bin/sh", "-c", workspace.HarvestScript(r.Branch, r.BaseCommit)},
		User:    fmt.Sprintf("%d:%d", uid, gid),
		WorkDir: containerWorkspace,
		Env:     []string{"HOME=/tmp"},
		Mounts: []sandbox.Mount{
			{Source: filepath.Join(dir, "workspace"), Target: containerWorkspace},
			{Source: outDir, Target: containerOut},
		},
		Labels: m.labels(r, "harvest"),
		Limits: sandbox.Limits{MemoryBytes: 1 << 30, Pids: 256, CPUs: 1},
		// It runs git on what the agent wrote: as contained as the agent.
		Runtime: r.Runtime,
	})
	if err != nil {
		return workspace.Imported{}, "", fmt.Errorf("harvest run %s: %w", r.ID, err)
	}
	defer m.Engine.Remove(context.WithoutCancel(ctx), id)
	if err := m.Engine.Start(ctx, id); err != nil {
		return workspace.Imported{}, "", fmt.Errorf("harvest run %s: %w", r.ID, err)
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if code, err := m.Engine.Wait(hctx, id); err != nil {
		return workspace.Imported{}, "", fmt.Errorf("harvest run %s: %w", r.ID, err)
	} else if code != 0 {
		return workspace.Imported{}, "", fmt.Errorf("harvest run %s: the harvest container exited with status %d", r.ID, code)
	}
	h, err := workspace.ReadHarvest(outDir)
	if err != nil {
		return workspace.Imported{}, "", fmt.Errorf("harvest run %s: %w", r.ID, err)
	}
	if h.Lost() {
		return workspace.Imported{}, "", errors.New(h.Error)
	}
	imp, err := workspace.Import(ctx, r.Project, filepath.Join(outDir, workspace.BundleFile), r.ID)
	return imp, h.Error, err
}
