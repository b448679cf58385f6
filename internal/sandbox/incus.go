package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Incus is the Engine backed by Incus system containers, reached through
// incusd's REST API on its Unix socket (incus_client.go).
//
// How airlock's containers map onto instances:
//   - an instance per container, named as the container; its ID is its name;
//   - no profile: the instance's devices are exactly its root disk on the
//     configured pool, the airlock binary (its init, incus_init.go) and the
//     spec's mounts as disk devices with shift=true (files keep their host
//     owners); no NIC unless it is a sandbox's proxy;
//   - unprivileged, without the guest API (/dev/incus), nesting only when
//     configured, and then only for the agent, with a container engine
//     started by its init (incus_nesting.go);
//   - labels are user.* config keys; the image reference is kept apart;
//   - the exit status and output come from the init's root-only record,
//     read through Incus' file API.
type Incus struct {
	c *incusClient
	// binary is the host path of the static airlock binary every instance
	// runs as its init; "" means this very executable.
	binary string
	opts   IncusOptions
	// engineSockets are host paths never to be mounted into an instance.
	engineSockets []string
	// gone are the instances whose command has ended and whose deletion
	// waits, in the background, for Incus to tear them down (Remove).
	gone *incusGone
	// files orders requests for instances' files around incusd's
	// forkfile race (incus_forkfile.go).
	files *forkfileGate
}

// incusGone tracks the background deletions of ended instances. Every
// call on such an instance's name waits for its deletion first, so to
// callers it is gone when Remove returns; Close waits for all of them.
type incusGone struct {
	mu      sync.Mutex
	pending map[string]chan struct{}
	wg      sync.WaitGroup
}

// await waits until the background deletion of name, if any, is done.
func (g *incusGone) await(ctx context.Context, name string) {
	g.mu.Lock()
	done := g.pending[name]
	g.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// has reports whether name is being deleted in the background.
func (g *incusGone) has(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending[name] != nil
}

// start runs del for name in the background.
func (g *incusGone) start(name string, del func()) {
	done := make(chan struct{})
	g.mu.Lock()
	g.pending[name] = done
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		del()
		g.mu.Lock()
		delete(g.pending, name)
		g.mu.Unlock()
		close(done)
	}()
}

// IncusOptions are the [engine.incus] settings.
type IncusOptions struct {
	// Pool is the storage pool of the instances' root disks.
	Pool string
	// Network is the managed bridge the sandboxes' proxies join.
	Network string
	// Nesting lets the agent run containers itself (security.nesting).
	Nesting bool
}

// Defaults of IncusOptions.
const (
	IncusDefaultPool    = "airlock"
	IncusDefaultNetwork = "airlockbr0"
)

// incusImageKey keeps the image reference an instance was made from; keys
// under this prefix are the backend's own, not labels.
const (
	incusOwnKeys  = "user.airlock-incus."
	incusImageKey = incusOwnKeys + "image"
	incusLabelKey = "user."
)

// NewIncus connects lazily to incusd at host (unix:///path); "" means
// /var/lib/incus/unix.socket. No request is made until the first call.
func NewIncus(host string) (*Incus, error) {
	return NewIncusWith(host, IncusOptions{})
}

// NewIncusWith is NewIncus with settings; zero fields take the defaults.
func NewIncusWith(host string, opts IncusOptions) (*Incus, error) {
	c, err := newIncusClient(host)
	if err != nil {
		return nil, err
	}
	if opts.Pool == "" {
		opts.Pool = IncusDefaultPool
	}
	if opts.Network == "" {
		opts.Network = IncusDefaultNetwork
	}
	socks := append(engineSockets(""), "/var/lib/incus", "/run/incus", "/var/lib/incus/unix.socket", c.socket, filepath.Dir(c.socket))
	return &Incus{c: c, opts: opts, engineSockets: socks, gone: &incusGone{pending: map[string]chan struct{}{}},
		files: newForkfileGate()}, nil
}

// UseBinary sets the static airlock binary the instances run as their
// init (tests, whose own executable is not airlock).
func (i *Incus) UseBinary(path string) { i.binary = path }

// Kind is KindIncus.
func (i *Incus) Kind() string { return KindIncus }

// Close waits for the deletions still under way (Remove), then releases
// the client's idle connections.
func (i *Incus) Close() error {
	i.gone.wg.Wait()
	i.c.close()
	return nil
}

// Ping checks that incusd answers and that this user is trusted by it (an
// untrusted client sees only the API's public part).
func (i *Incus) Ping(ctx context.Context) error {
	var server struct {
		Auth string `json:"auth"`
	}
	if err := i.c.get(ctx, "/1.0", &server); err != nil {
		return fmt.Errorf("ping incus: %w", err)
	}
	if server.Auth != "trusted" {
		return fmt.Errorf("ping incus: %w at unix://%s: incusd does not trust this user (auth %q): add the user to the group incusd gives its socket to (incus-admin)",
			ErrEngineUnreachable, i.c.socket, server.Auth)
	}
	return nil
}

// incusInstance is the part of an instance airlock reads.
type incusInstance struct {
	Name       string            `json:"name"`
	Status     string            `json:"status"`
	Config     map[string]string `json:"config"`
	LastUsedAt time.Time         `json:"last_used_at"`
	CreatedAt  time.Time         `json:"created_at"`
}

func instancePath(name string) string { return "/1.0/instances/" + url.PathEscape(name) }

// Create makes (but does not start) an instance for spec.
func (i *Incus) Create(ctx context.Context, spec Spec) (string, error) {
	return i.create(ctx, spec, incusExtra{binary: i.binary})
}

// incusExtra is what only the backend's own instances have.
type incusExtra struct {
	binary string // the airlock binary; "" for this executable
	// nic, when set, is the one network interface (a sandbox's proxy).
	nic *incusNIC
}

// incusNIC is an interface on a managed bridge with a fixed address, which
// LXC configures before the init runs (the init is no DHCP client).
type incusNIC struct {
	network string
	addr    string // a.b.c.d/prefix
	gateway string
}

// create makes an instance.
func (i *Incus) create(ctx context.Context, spec Spec, x incusExtra) (string, error) {
	i.gone.await(ctx, spec.Name)
	req, err := i.instanceRequest(ctx, spec, x)
	if err != nil {
		return "", fmt.Errorf("create instance %s: %w", spec.Name, err)
	}
	if _, err := i.c.run(ctx, http.MethodPost, "/1.0/instances", req); err != nil {
		if incusConflict(err) {
			return "", fmt.Errorf("create instance %s: the name is already in use; remove the old instance (incus delete -f %s) or pick another name: %w",
				spec.Name, spec.Name, err)
		}
		return "", fmt.Errorf("create instance %s: %w", spec.Name, err)
	}
	return spec.Name, nil
}

// imageConfig reads the runtime configuration airlock's image builds record
// as image properties; an image without them (an imported root file
// system) has none. A missing image wraps ErrNotFound.
func (i *Incus) imageConfig(ctx context.Context, ref string) (imageConfig, error) {
	props, err := i.aliasProperties(ctx, ref)
	if err != nil {
		return imageConfig{}, err
	}
	c, err := configFromProperties(props)
	if err != nil {
		return imageConfig{}, fmt.Errorf("image %s: %w", ref, err)
	}
	return c, nil
}

// instanceRequest turns spec into the create request, with the hardening
// every instance gets.
func (i *Incus) instanceRequest(ctx context.Context, spec Spec, x incusExtra) (map[string]any, error) {
	binary := x.binary
	if spec.Image == "" {
		return nil, errors.New("no image given")
	}
	if spec.Runtime != "" {
		return nil, fmt.Errorf("the %s runtime cannot be chosen on incus (its containers run under LXC, not an OCI runtime): run without it, or use Docker for it: %w", spec.Runtime, ErrUnsupported)
	}
	if err := checkUser(spec.User); err != nil {
		return nil, err
	}
	uid, gid, _ := numericUser(spec.User)
	if binary == "" {
		var err error
		if binary, err = staticExecutable(); err != nil {
			return nil, err
		}
	}
	if spec.Limits.MemoryBytes < 0 || spec.Limits.CPUs < 0 || spec.Limits.Pids < 0 {
		return nil, fmt.Errorf("negative resource limit %+v: use 0 for the engine's default", spec.Limits)
	}
	if _, err := tmpfsOptions(spec.Tmpfs); err != nil {
		return nil, err
	}
	var hosts []string
	for _, h := range spec.ExtraHosts {
		if h.Name == "" || !h.Addr.IsValid() || strings.ContainsAny(h.Name, ": \t\n#") {
			return nil, fmt.Errorf("extra host %q -> %v: want a name and an address", h.Name, h.Addr)
		}
		hosts = append(hosts, h.Addr.String()+"\t"+h.Name)
	}
	// A nesting agent is root in its instance (through the container
	// engine's socket). A shifted mount would let that root write files
	// owned by the host's root, set-uid ones too, into host directories;
	// so such an instance maps only the agent's own ids onto the host's
	// (raw.idmap) and shifts nothing: its root stays the unprivileged
	// isolated range on every mount.
	nesting := i.opts.Nesting && x.nic == nil
	shift := "true"
	if nesting {
		if err := checkIncusRawIdmap(uid, gid, "/etc/subuid", "/etc/subgid"); err != nil {
			return nil, err
		}
		shift = "false"
	}
	devices := map[string]any{
		"root":    map[string]string{"type": "disk", "path": "/", "pool": i.opts.Pool},
		"airlock": map[string]string{"type": "disk", "source": binary, "path": BinaryPath, "readonly": "true", "shift": shift},
	}
	for n, m := range spec.Mounts {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return nil, fmt.Errorf("mount %s -> %s: both paths must be absolute", m.Source, m.Target)
		}
		if err := CheckNotEngineSocket(m.Source, i.engineSockets); err != nil {
			return nil, err
		}
		devices["mount"+strconv.Itoa(n)] = map[string]string{
			"type": "disk", "source": m.Source, "path": m.Target,
			"readonly": strconv.FormatBool(m.ReadOnly), "shift": shift,
		}
	}
	rawNet, resolv := "", ""
	if n := x.nic; n != nil {
		ip, _, _ := strings.Cut(n.addr, "/")
		devices["eth0"] = map[string]string{"type": "nic", "network": n.network, "name": "eth0", "ipv4.address": ip}
		rawNet = "lxc.net.0.ipv4.address = " + n.addr + "\nlxc.net.0.ipv4.gateway = " + n.gateway + "\n"
		resolv = "nameserver " + n.gateway + "\n"
	}

	ic, err := i.imageConfig(ctx, spec.Image)
	if err != nil {
		return nil, err
	}
	cmd := spec.Cmd
	if len(cmd) == 0 {
		cmd = ic.Cmd
	}
	argv := append(append([]string(nil), ic.Entrypoint...), cmd...)
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command given, and image %s names none", spec.Image)
	}
	workdir := spec.WorkDir
	if workdir == "" {
		workdir = ic.WorkDir
	}
	if workdir == "" {
		workdir = "/"
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"}
	env = append(append(env, ic.Env...), spec.Env...)
	init, err := encodeIncusInitSpec(incusInitSpec{
		Cmd: argv, Env: env, UID: uint32(uid), GID: uint32(gid), WorkDir: workdir,
		Tmpfs: spec.Tmpfs, Hosts: hosts, Resolv: resolv, NoFile: nofileLimit, Nesting: nesting,
	})
	if err != nil {
		return nil, err
	}

	config := map[string]string{
		"security.privileged": "false",
		"security.nesting":    strconv.FormatBool(nesting),
		"security.guestapi":   "false",
		// Each instance its own range of host ids: a root that broke out
		// of one container is nobody to the others.
		"security.idmap.isolated": "true",
		"boot.autostart":          "false",
		"raw.lxc": "lxc.init.cmd = " + BinaryPath + " " + IncusInitCommand + "\n" +
			"lxc.environment = " + incusInitEnv + "=" + init + "\n" +
			// LXC leaves mounting the cgroups to an init that keeps
			// CAP_SYS_ADMIN (systemd does); this one does not.
			"lxc.mount.auto = cgroup:mixed:force\n" +
			// Else LXC guesses the halt signal from the init's blocked
			// signals, which a Go init blocks now and then.
			"lxc.signal.halt = SIGPWR\n" + rawNet,
		incusImageKey: spec.Image,
	}
	if nesting {
		config["raw.idmap"] = fmt.Sprintf("uid %d %d\ngid %d %d", uid, uid, gid, gid)
	}
	if l := spec.Limits; l.MemoryBytes > 0 {
		config["limits.memory"] = strconv.FormatInt(l.MemoryBytes, 10)
		config["limits.memory.swap"] = "false"
	}
	if l := spec.Limits; l.CPUs > 0 {
		// A share of one CPU's time per period, like Docker's --cpus.
		config["limits.cpu.allowance"] = fmt.Sprintf("%dms/100ms", int64(math.Ceil(l.CPUs*100)))
	}
	if l := spec.Limits; l.Pids > 0 {
		config["limits.processes"] = strconv.FormatInt(l.Pids, 10)
	}
	for k, v := range spec.Labels {
		if k == "" || strings.HasPrefix(incusLabelKey+k, incusOwnKeys) {
			return nil, fmt.Errorf("label %q is not allowed", k)
		}
		config[incusLabelKey+k] = v
	}
	return map[string]any{
		"name":     spec.Name,
		"type":     "container",
		"source":   map[string]string{"type": "image", "alias": spec.Image},
		"profiles": []string{},
		"config":   config,
		"devices":  devices,
	}, nil
}

// Start starts a created (or stopped) instance. One that has ended but is
// still being torn down is started once it is stopped.
func (i *Incus) Start(ctx context.Context, id string) error {
	i.gone.await(ctx, id)
	var inst incusInstance
	if err := i.c.get(ctx, instancePath(id), &inst); err != nil {
		return fmt.Errorf("start instance %s: %w", id, err)
	}
	if i.incusStatus(ctx, inst) == "Stopping" && !i.waitStopped(ctx, id, incusTeardown) {
		return fmt.Errorf("start instance %s: it has ended but Incus did not stop it within %s", id, incusTeardown)
	}
	if _, err := i.c.run(ctx, http.MethodPut, instancePath(id)+"/state", map[string]any{"action": "start"}); err != nil {
		return fmt.Errorf("start instance %s: %w", id, err)
	}
	return nil
}

// incusTeardown bounds the wait for Incus to stop an instance whose init
// has ended.
const incusTeardown = 30 * time.Second

// Wait blocks until the instance's command ended and returns its exit
// code; before Start it waits for the start. Incus has no wait of its own,
// so it polls; it returns once the init's exit record is there, without
// waiting for Incus to tear the instance down.
func (i *Incus) Wait(ctx context.Context, id string) (int, error) {
	delay := 50 * time.Millisecond
	var failing time.Time // since when every look has failed
	for {
		st, err := i.Inspect(ctx, id)
		switch {
		case err == nil:
			failing = time.Time{}
			switch st.Status {
			case StatusExited, StatusDead:
				return st.ExitCode, nil
			}
		case errors.Is(err, ErrNotFound) || ctx.Err() != nil:
			return 0, fmt.Errorf("wait for instance %s: %w", id, err)
		case failing.IsZero():
			// One failed look is no answer: incusd fails a file read
			// now and then while it stops an instance (its file server
			// goes with it), and a wait that gave up would fail the run.
			failing = time.Now()
		case time.Since(failing) > incusWaitErrors:
			return 0, fmt.Errorf("wait for instance %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for instance %s: %w", id, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 250*time.Millisecond)
	}
}

// incusWaitErrors is how long Wait looks again at an instance every look
// at which fails, before it gives up.
const incusWaitErrors = 30 * time.Second

// Inspect reports the instance's state.
func (i *Incus) Inspect(ctx context.Context, id string) (State, error) {
	i.gone.await(ctx, id)
	var inst incusInstance
	if err := i.c.get(ctx, instancePath(id), &inst); err != nil {
		return State{}, fmt.Errorf("inspect instance %s: %w", id, err)
	}
	return i.stateOf(ctx, inst)
}

// stateOf maps an instance onto airlock's State. A stopped instance that
// ran is exited with its init's recorded status, or dead when there is no
// valid record (it was killed from outside, or the record is not the
// init's).
func (i *Incus) stateOf(ctx context.Context, inst incusInstance) (State, error) {
	inst = i.pastError(ctx, inst)
	inst, rec, ended := i.ended(ctx, inst)
	st := State{ID: inst.Name, Name: inst.Name, Image: inst.Config[incusImageKey], Labels: map[string]string{}}
	for k, v := range inst.Config {
		if strings.HasPrefix(k, incusLabelKey) && !strings.HasPrefix(k, incusOwnKeys) {
			st.Labels[strings.TrimPrefix(k, incusLabelKey)] = v
		}
	}
	started := inst.LastUsedAt.Year() > 1970
	if started {
		st.StartedAt = inst.LastUsedAt
	}
	switch inst.Status {
	case "Running":
		st.Status = StatusRunning
		if ended {
			// Being torn down: for airlock the command has ended.
			st.Status, st.ExitCode, st.FinishedAt = StatusExited, rec.Code, rec.Finished
		}
	case "Frozen":
		st.Status = StatusPaused
	case "Error":
		st.Status, st.ExitCode = StatusDead, -1
		st.Why = fmt.Sprintf("Incus has reported the instance in error for %s", incusErrorGrace)
	case "Stopped":
		if !started {
			st.Status = StatusCreated
			break
		}
		rec, err := i.stoppedRecord(ctx, inst)
		if errors.Is(err, ErrNotFound) || errors.Is(err, errBadRecord) {
			st.Status, st.ExitCode = StatusDead, -1
			st.Why = fmt.Sprintf("it stopped without a valid exit record of its init (%v)", err)
			// Incus stamps the start before the instance runs: a start
			// may be under way. Wait polls on.
			if time.Since(inst.LastUsedAt) < incusStartWindow {
				st.Status = StatusUnknown
			}
			break
		}
		if err != nil {
			if gerr := i.c.get(ctx, instancePath(inst.Name), nil); errors.Is(gerr, ErrNotFound) {
				return State{}, fmt.Errorf("inspect instance %s: %w", inst.Name, gerr)
			}
			return State{}, fmt.Errorf("inspect instance %s: %w", inst.Name, err)
		}
		st.Status, st.ExitCode, st.FinishedAt = StatusExited, rec.Code, rec.Finished
	default:
		st.Status = StatusUnknown
	}
	return st, nil
}

var errBadRecord = errors.New("not a valid exit record")

// incusErrorGrace is how long an instance Incus reports in error is looked
// at again before the error counts.
const incusErrorGrace = 30 * time.Second

// pastError returns the instance as Incus reports it once it is no longer
// in error, or after incusErrorGrace. Incus reports "Error" when LXC's
// monitor does not answer within 5 s, which a busy host makes happen to a
// healthy instance (seen with ten runs started at once on two cores);
// taken at its word, that would record a run as failed whose agent was
// fine.
func (i *Incus) pastError(ctx context.Context, inst incusInstance) incusInstance {
	deadline := time.Now().Add(incusErrorGrace)
	for inst.Status == "Error" && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return inst
		case <-time.After(500 * time.Millisecond):
		}
		var now incusInstance
		if err := i.c.get(ctx, instancePath(inst.Name), &now); err != nil {
			return inst
		}
		inst = now
	}
	return inst
}

// incusRecordGrace is how long a stopped instance's exit record is looked
// for before its absence, or a failure to read it, counts.
const incusRecordGrace = 3 * time.Second

// stoppedRecord reads the exit record of this start of a stopped instance.
// Incus' file API has, under load, answered "not found" for a record that
// was there a moment later (while it tears the instance down, a read can
// reach a file server of the running instance's), and failed a read whose
// file server went with the instance ("connection reset by peer"); a
// record missing, bad or not read is read again for a while before it
// counts, as the verdict it leads to (dead, the agent's work judged
// failed) cannot be taken back. A record older than the start is an
// earlier start's: this start left none.
func (i *Incus) stoppedRecord(ctx context.Context, inst incusInstance) (incusExitRecord, error) {
	deadline := time.Now().Add(incusRecordGrace)
	verdict := deadline // when a missing or bad record counts
	if time.Since(inst.LastUsedAt) < incusStartWindow {
		// Not yet a verdict either way (stateOf): one look will do.
		verdict = time.Now()
	}
	for {
		rec, err := i.exitRecord(ctx, inst.Name)
		if err == nil && rec.Finished.Before(inst.LastUsedAt) {
			err = fmt.Errorf("%w: it is of an earlier start (finished %s, started %s)", errBadRecord,
				rec.Finished.Format(time.RFC3339Nano), inst.LastUsedAt.Format(time.RFC3339Nano))
		}
		missing := errors.Is(err, ErrNotFound) || errors.Is(err, errBadRecord)
		if err == nil || ctx.Err() != nil || missing && !time.Now().Before(verdict) || time.Now().After(deadline) {
			return rec, err
		}
		select {
		case <-ctx.Done():
			return rec, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ended reports whether an instance Incus still calls Running has ended for
// airlock: its init left this start's exit record and is gone or going.
// Incus reports such an instance Stopped only ~0.6 s later, once LXC and
// incusd have torn it down; nothing waits for that but a new start and the
// deletion. A record older than the instance's last start is an earlier
// start's (the init removes it as it begins).
//
// Incus' file API fails now and then while it tears an instance down; then
// ended looks again until it can tell, and returns the instance as it
// found it last (perhaps Stopped by then): once Wait has seen an instance
// exit, every later look must too.
func (i *Incus) ended(ctx context.Context, inst incusInstance) (incusInstance, incusExitRecord, bool) {
	deadline := time.Now().Add(incusTeardown)
	for inst.Status == "Running" {
		rec, err := i.exitRecord(ctx, inst.Name)
		switch {
		case err == nil:
			return inst, rec, !rec.Finished.Before(inst.LastUsedAt)
		case errors.Is(err, ErrNotFound) || time.Now().After(deadline):
			return inst, incusExitRecord{}, false
		}
		select {
		case <-ctx.Done():
			return inst, incusExitRecord{}, false
		case <-time.After(50 * time.Millisecond):
		}
		var now incusInstance
		if err := i.c.get(ctx, instancePath(inst.Name), &now); err != nil {
			return inst, incusExitRecord{}, false
		}
		inst = now
	}
	return inst, incusExitRecord{}, false
}

// incusStatus is Incus' status of an instance, with "Stopping" for a
// Running instance that has ended for airlock (ended).
func (i *Incus) incusStatus(ctx context.Context, inst incusInstance) string {
	inst, _, ok := i.ended(ctx, inst)
	if ok {
		return "Stopping"
	}
	return inst.Status
}

// incusStartWindow is how long after its start stamp a stopped instance
// without an exit record may still be starting.
const incusStartWindow = 10 * time.Second

// exitRecord reads the init's exit record.
func (i *Incus) exitRecord(ctx context.Context, name string) (incusExitRecord, error) {
	var buf strings.Builder
	if err := i.readStateFile(ctx, name, incusExitFile, &buf, incusMaxRecord); err != nil {
		return incusExitRecord{}, err
	}
	rec, err := parseIncusExitRecord([]byte(buf.String()))
	if err != nil {
		return incusExitRecord{}, fmt.Errorf("%w: %w", errBadRecord, err)
	}
	return rec, nil
}

// readStateFile copies a file of the init's state directory to w, at most
// max bytes; it must be a regular file of the container's root.
func (i *Incus) readStateFile(ctx context.Context, name, path string, w io.Writer, max int64) error {
	resp, err := i.getFile(ctx, name, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if t := resp.Header.Get("X-Incus-Type"); t != "file" {
		return fmt.Errorf("%w: %s is a %q", errBadRecord, path, t)
	}
	if u := resp.Header.Get("X-Incus-Uid"); u != "0" {
		return fmt.Errorf("%w: %s belongs to uid %q", errBadRecord, path, u)
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, max+1))
	if err != nil {
		return fmt.Errorf("read %s of instance %s: %w", path, name, err)
	}
	if n > max {
		return fmt.Errorf("%w: %s exceeds %d bytes", errBadRecord, path, max)
	}
	return nil
}

// Stop asks the init to stop its command (SIGTERM), then, after timeout,
// to kill it; an init that does not end is stopped by force.
func (i *Incus) Stop(ctx context.Context, id string, timeout time.Duration) error {
	st, err := i.Inspect(ctx, id)
	if err != nil {
		return fmt.Errorf("stop instance %s: %w", id, err)
	}
	if st.Status == StatusPaused {
		if _, err := i.c.run(ctx, http.MethodPut, instancePath(id)+"/state", map[string]any{"action": "unfreeze"}); err != nil {
			return fmt.Errorf("stop instance %s: %w", id, err)
		}
	} else if st.Status != StatusRunning {
		return nil
	}
	if secs := int(math.Ceil(timeout.Seconds())); secs > 0 {
		// Incus sends LXC's halt signal (SIGPWR), which the init forwards
		// as SIGTERM; it answers with an error when the time ran out.
		_, err := i.c.run(ctx, http.MethodPut, instancePath(id)+"/state", map[string]any{"action": "stop", "timeout": secs})
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("stop instance %s: %w", id, err)
		}
	}
	// The init kills everything, records 128+SIGKILL and ends.
	if _, err := i.execRoot(ctx, id, []string{BinaryPath, IncusInitCommand, "kill"}); err == nil {
		if i.waitStopped(ctx, id, 10*time.Second) {
			return nil
		}
	}
	return i.forceStop(ctx, id)
}

func (i *Incus) forceStop(ctx context.Context, id string) error {
	_, err := i.c.run(ctx, http.MethodPut, instancePath(id)+"/state", map[string]any{"action": "stop", "force": true})
	if err != nil && !strings.Contains(err.Error(), "already stopped") && !strings.Contains(err.Error(), "not running") {
		return fmt.Errorf("stop instance %s: %w", id, err)
	}
	return nil
}

// waitStopped polls until the instance is stopped, for up to d.
func (i *Incus) waitStopped(ctx context.Context, id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var inst incusInstance
		if err := i.c.get(ctx, instancePath(id), &inst); err != nil || inst.Status == "Stopped" {
			return err == nil
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// execRoot runs argv as the container's root, without streams, and
// returns its exit status.
func (i *Incus) execRoot(ctx context.Context, id string, argv []string) (int, error) {
	op, err := i.c.run(ctx, http.MethodPost, instancePath(id)+"/exec", map[string]any{
		"command": argv, "wait-for-websocket": false, "interactive": false,
		"record-output": false, "environment": map[string]string{}, "user": 0, "group": 0,
	})
	if err != nil {
		return 0, fmt.Errorf("exec in instance %s: %w", id, err)
	}
	code, _ := op.Metadata["return"].(float64)
	return int(code), nil
}

// Remove stops the instance by force and deletes it; a missing instance is
// not an error. An instance whose command has ended (its init's exit
// record is there) but which Incus is still tearing down is deleted in the
// background: to this engine it is gone at once, and Close waits for it.
func (i *Incus) Remove(ctx context.Context, id string) error {
	i.gone.await(ctx, id)
	var inst incusInstance
	if err := i.c.get(ctx, instancePath(id), &inst); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("remove instance %s: %w", id, err)
	}
	if i.incusStatus(ctx, inst) == "Stopping" {
		i.gone.start(id, func() {
			ctx := context.WithoutCancel(ctx)
			if err := i.removeNow(ctx, id, inst.Status); err != nil {
				// Labelled: `airlock clean` finds it.
				fmt.Fprintf(os.Stderr, "airlock: warning: %v\n", err)
			}
		})
		return nil
	}
	return i.removeNow(ctx, id, inst.Status)
}

// removeNow stops the instance (in status) by force and deletes it.
func (i *Incus) removeNow(ctx context.Context, id, status string) error {
	if status != "Stopped" {
		// Its error is the deletion's below: another process may be
		// stopping or removing it at the same time.
		i.forceStop(ctx, id)
	}
	// An instance whose init has just ended may still be torn down, and
	// refuses deletion meanwhile, as it does while another process
	// deletes it: try again until it is stopped, or gone.
	deadline := time.Now().Add(incusTeardown)
	for {
		_, err := i.c.run(ctx, http.MethodDelete, instancePath(id), nil)
		if err == nil || errors.Is(err, ErrNotFound) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("remove instance %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		if !i.waitStopped(ctx, id, incusTeardown) {
			i.forceStop(ctx, id)
		}
	}
}

// List returns the instances carrying every given label.
func (i *Incus) List(ctx context.Context, labels map[string]string) ([]State, error) {
	var insts []incusInstance
	if err := i.c.get(ctx, "/1.0/instances?recursion=1", &insts); err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	deleting, err := i.deleting(ctx)
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	sort.Slice(insts, func(a, b int) bool { return insts[a].Name < insts[b].Name })
	states := []State{}
next:
	for _, inst := range insts {
		if i.gone.has(inst.Name) || deleting[inst.Name] {
			continue // removed, for this process, or being removed
		}
		for k, v := range labels {
			if got, ok := inst.Config[incusLabelKey+k]; !ok || got != v {
				continue next
			}
		}
		st, err := i.stateOf(ctx, inst)
		if err != nil {
			// Removed, or being removed, since the list was taken: look
			// again.
			var now incusInstance
			if gerr := i.c.get(ctx, instancePath(inst.Name), &now); errors.Is(gerr, ErrNotFound) {
				continue
			} else if gerr == nil {
				st, err = i.stateOf(ctx, now)
			}
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		states = append(states, st)
	}
	return states, nil
}

// deleting names the instances that an operation of incusd is deleting.
// List leaves them out without reading their files: on Incus 6.0.4 a file
// read that meets a deletion starts a file server that the deletion then
// waits for, and further reads keep that server alive, so a List repeated
// meanwhile (the engine suite's ListWhileRemoving) held a deletion for
// over five minutes.
func (i *Incus) deleting(ctx context.Context) (map[string]bool, error) {
	var ops map[string][]incusOperation // by status: "running", "success"...
	if err := i.c.get(ctx, "/1.0/operations?recursion=1", &ops); err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	names := map[string]bool{}
	for _, op := range ops["running"] {
		if op.Description != "Deleting instance" {
			continue
		}
		for _, path := range op.Resources["instances"] {
			path, _, _ = strings.Cut(path, "?") // ?project=
			if name, ok := strings.CutPrefix(path, "/1.0/instances/"); ok {
				if n, err := url.PathUnescape(name); err == nil {
					names[n] = true
				}
			}
		}
	}
	return names, nil
}

// Logs copies the command's combined output, as the init kept it, to w.
func (i *Incus) Logs(ctx context.Context, id string, w io.Writer) error {
	i.gone.await(ctx, id)
	var inst incusInstance
	if err := i.c.get(ctx, instancePath(id), &inst); err != nil {
		return fmt.Errorf("logs of instance %s: %w", id, err)
	}
	// A read that fails as the instance stops (its file server went with
	// it: "connection reset by peer") is tried again for a while, as the
	// exit record's is (stoppedRecord). The init only ever appends to the
	// output, so a try passes on only what the tries before it did not:
	// what reaches w is the output once, and nothing is held in memory.
	out := &resumeWriter{w: w}
	deadline := time.Now().Add(incusRecordGrace)
	for {
		out.seen = 0
		err := i.readStateFile(ctx, id, incusLogFile, out, incusMaxLog+1024)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil // never started
		case err == nil:
			return nil
		case errors.Is(err, errBadRecord) || out.err != nil || ctx.Err() != nil || time.Now().After(deadline):
			return fmt.Errorf("logs of instance %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logs of instance %s: %w", id, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// resumeWriter passes on to w the bytes of a read past those an earlier
// read of the same growing file passed on.
type resumeWriter struct {
	w     io.Writer
	seen  int64 // bytes of this read so far
	wrote int64 // bytes passed on to w, by all reads
	err   error // w's, which ends the reads
}

func (r *resumeWriter) Write(p []byte) (int, error) {
	n := len(p)
	if skip := r.wrote - r.seen; skip > 0 {
		p = p[min(skip, int64(len(p))):]
	}
	r.seen += int64(n)
	if len(p) > 0 {
		m, err := r.w.Write(p)
		r.wrote += int64(m)
		if err != nil {
			r.err = err
			return n - len(p) + m, err
		}
	}
	return n, nil
}

// ImageExists reports whether an image alias ref exists.
func (i *Incus) ImageExists(ctx context.Context, ref string) (bool, error) {
	err := i.c.get(ctx, "/1.0/images/aliases/"+url.PathEscape(ref), nil)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return true, nil
}

// staticExecutable is this airlock binary, which must be statically
// linked: it runs inside images without a libc.
func staticExecutable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the airlock binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the airlock binary: %w", err)
	}
	if err := checkStatic(exe); err != nil {
		return "", err
	}
	return exe, nil
}
