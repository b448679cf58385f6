package sandbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
)

// incusBuildPrefix starts the name of every build instance.
const incusBuildPrefix = "airlock-build-"

// incusBuildRoleKey marks build instances (a label, as user.* config).
const incusBuildRoleKey = "user.airlock.role"

// BuildImage runs req's Dockerfile in a build instance, an unprivileged
// container from the FROM image with one NIC on the configured bridge (apt
// and npm reach out through its NAT), and publishes the instance's root file
// system as an image aliased with each of req.Tags. The Dockerfile's ENV,
// USER, WORKDIR, ENTRYPOINT, CMD and LABELs become image properties
// (airlock.*), which Create applies as Docker would. The instructions it
// cannot run are refused before anything is made (incus_build_plan.go); a
// failing step is a *BuildError. The build instance is removed either way.
func (i *Incus) BuildImage(ctx context.Context, req BuildRequest) error {
	tags := strings.Join(req.Tags, ", ")
	if len(req.Tags) == 0 {
		return errors.New("build image: no tag given")
	}
	fail := func(err error) error { return fmt.Errorf("build %s: %w", tags, err) }
	if req.Target != "" {
		return fail(fmt.Errorf("build target %q: Incus builds the last stage only", req.Target))
	}
	bc, err := openBuildContext(req)
	if err != nil {
		return fail(err)
	}
	dfName := req.Dockerfile
	if dfName == "" {
		dfName = "Dockerfile"
	}
	data, err := bc.readFile(dfName)
	if err != nil {
		return fail(err)
	}
	plan, err := parseDockerfile(dfName, data)
	if err != nil {
		return fail(err)
	}
	base, err := plan.baseRef(req.BuildArgs)
	if err != nil {
		return fail(err)
	}
	props, err := i.aliasProperties(ctx, base)
	if err != nil {
		return fail(fmt.Errorf("%s line %d: FROM %s: %w", dfName, plan.From.Line, base, err))
	}
	baseCfg, err := configFromProperties(props)
	if err != nil {
		return fail(fmt.Errorf("FROM %s: %w", base, err))
	}
	ops, cfg, err := plan.expand(baseCfg, req.BuildArgs)
	if err != nil {
		return fail(err)
	}
	// Every COPY source must be there before an instance is made.
	for _, op := range ops {
		for _, src := range op.Sources {
			m, err := bc.match(src)
			if err != nil {
				return fail(fmt.Errorf("%s: %w", op.Step, err))
			}
			if len(m) == 0 {
				return fail(fmt.Errorf("%s: %s: no such file or directory in the build context", op.Step, src))
			}
		}
	}

	out := newBuildOutput(req.Progress)
	n := 0
	for _, in := range plan.MetaArgs {
		n++
		out.step(fmt.Sprintf("Step %d/%d : %s", n, plan.stepCount(), in.Original))
	}
	out.step(fmt.Sprintf("Step %d/%d : %s", n+1, plan.stepCount(), plan.From.Original))

	name, err := buildInstanceName()
	if err != nil {
		return fail(err)
	}
	b := &incusBuild{i: i, name: name, out: out, ctx: bc}
	defer b.remove(ctx)
	if err := b.create(ctx, base); err != nil {
		return fail(err)
	}
	for _, op := range ops {
		out.step(op.Step)
		if err := b.do(ctx, op); err != nil {
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			var be *BuildError
			if !errors.As(err, &be) {
				be = &BuildError{Step: op.Step, Message: err.Error(), Tail: out.lastLines()}
			}
			return fail(be)
		}
	}
	out.line(" ---> publishing " + tags)
	fp, err := b.publish(ctx, cfg, req.Tags[0])
	if err != nil {
		return fail(err)
	}
	for _, tag := range req.Tags {
		if err := i.SetImageAlias(ctx, tag, fp); err != nil {
			return fail(err)
		}
	}
	out.line("Successfully built " + fp[:12])
	for _, tag := range req.Tags {
		out.line("Successfully tagged " + tag)
	}
	return nil
}

// aliasProperties returns the properties of the image alias names; a
// missing alias says how to make it.
func (i *Incus) aliasProperties(ctx context.Context, alias string) (map[string]string, error) {
	var a struct {
		Target string `json:"target"`
	}
	if err := i.c.get(ctx, "/1.0/images/aliases/"+url.PathEscape(alias), &a); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("no image %s on Incus: build or import it first (airlock image build makes airlock's own): %w", alias, ErrNotFound)
		}
		return nil, err
	}
	var img struct {
		Properties map[string]string `json:"properties"`
	}
	if err := i.c.get(ctx, "/1.0/images/"+url.PathEscape(a.Target), &img); err != nil {
		return nil, err
	}
	return img.Properties, nil
}

func buildInstanceName() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return incusBuildPrefix + hex.EncodeToString(b), nil
}

// incusBuild is one build instance.
type incusBuild struct {
	i    *Incus
	name string
	out  *buildOutput
	ctx  *buildContext
	// passwd and group of the instance, read when a name must be resolved
	// (after every RUN, which may add users).
	ids *idFiles
	// The instance's interface on the bridge, and what puts its own
	// /etc/resolv.conf back before it is published.
	nic     *incusNIC
	restore func(context.Context) error
}

func (b *incusBuild) path() string { return "/1.0/instances/" + url.PathEscape(b.name) }

// create makes and starts the build instance. Its init only waits: each
// step is an exec, as the instance's root with its full (namespaced)
// privileges, as a Dockerfile's RUN has in Docker's builder.
func (b *incusBuild) create(ctx context.Context, base string) error {
	pool, network := b.i.opts.Pool, b.i.opts.Network
	// Picked and created under the lock the proxies take (startProxy).
	var err error
	for attempt := 0; ; attempt++ {
		b.nic = nil
		err = withMachineLock(ctx, incusAddressLock(), func() (err error) {
			if b.nic, err = b.i.proxyNIC(ctx, network, b.name); err != nil {
				return err
			}
			return b.createWith(ctx, base, pool)
		})
		if err != nil {
			if b.nic != nil && attempt < 4 && addressTaken(err, b.nic) {
				continue
			}
			return err
		}
		if _, err = b.i.c.run(ctx, http.MethodPut, b.path()+"/state", map[string]any{"action": "start"}); err != nil {
			if attempt < 4 && addressTaken(err, b.nic) {
				b.remove(ctx)
				continue
			}
			return fmt.Errorf("start build instance %s: %w", b.name, err)
		}
		break
	}
	b.restore, err = b.configureResolver(ctx)
	return err
}

func (b *incusBuild) createWith(ctx context.Context, base, pool string) error {
	ip, _, _ := strings.Cut(b.nic.addr, "/")
	req := map[string]any{
		"name":     b.name,
		"type":     "container",
		"source":   map[string]string{"type": "image", "alias": base},
		"profiles": []string{},
		"config": map[string]string{
			"security.privileged": "false",
			"security.guestapi":   "false",
			"boot.autostart":      "false",
			incusBuildRoleKey:     "build",
			// sleep is in every base airlock builds on (coreutils, busybox).
			// LXC sets the address before the init starts.
			"raw.lxc": "lxc.init.cmd = /bin/sleep 2147483647\n" +
				"lxc.net.0.ipv4.address = " + b.nic.addr + "\nlxc.net.0.ipv4.gateway = " + b.nic.gateway + "\n",
		},
		"devices": map[string]any{
			"root": map[string]string{"type": "disk", "path": "/", "pool": pool},
			"eth0": map[string]string{"type": "nic", "network": b.nic.network, "name": "eth0", "ipv4.address": ip},
		},
	}
	if _, err := b.i.c.run(ctx, http.MethodPost, "/1.0/instances", req); err != nil {
		return fmt.Errorf("create build instance %s from %s (pool %s, network %s): %w", b.name, base, pool, b.nic.network, err)
	}
	return nil
}

// remove deletes the build instance, also when ctx was cancelled.
func (b *incusBuild) remove(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	b.i.c.run(ctx, http.MethodPut, b.path()+"/state", map[string]any{"action": "stop", "force": true})
	if _, err := b.i.c.run(ctx, http.MethodDelete, b.path(), nil); err != nil && !errors.Is(err, ErrNotFound) {
		b.out.line(fmt.Sprintf("warning: remove build instance %s: %v (remove it with: incus delete -f %s)", b.name, err, b.name))
	}
}

func (b *incusBuild) do(ctx context.Context, op buildOp) error {
	switch op.Kind {
	case "run":
		return b.run(ctx, op)
	case "copy":
		return b.copy(ctx, op)
	case "mkdir":
		// The directories WORKDIR makes belong to the USER, as in BuildKit.
		ids, err := b.idFiles(ctx)
		if err != nil {
			return err
		}
		uid, gid, _, err := ids.user(op.User)
		if err != nil {
			return err
		}
		return b.mkdirAll(ctx, op.Dest, uid, gid)
	}
	return nil
}

func (b *incusBuild) run(ctx context.Context, op buildOp) error {
	ids, err := b.idFiles(ctx)
	if err != nil {
		return err
	}
	uid, gid, home, err := ids.user(op.User)
	if err != nil {
		return err
	}
	env := map[string]string{}
	for _, kv := range op.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = home
	}
	b.out.startStep()
	code, err := b.i.execStreams(ctx, b.name, incusExec{Argv: op.Argv, Env: env, UID: uid, GID: gid, Cwd: op.Dir}, ExecSpec{Stdout: b.out, Stderr: b.out})
	b.out.flush()
	b.ids = nil // the command may have added users
	if err != nil {
		return err
	}
	if code != 0 {
		return &BuildError{
			Step:    op.Step,
			Message: fmt.Sprintf("The command '%s' returned a non-zero code: %d", strings.Join(op.Argv, " "), code),
			Tail:    b.out.lastLines(),
		}
	}
	return nil
}

func (b *incusBuild) idFiles(ctx context.Context) (*idFiles, error) {
	if b.ids != nil {
		return b.ids, nil
	}
	ids := &idFiles{}
	for _, f := range []struct {
		path string
		dst  *string
	}{{"/etc/passwd", &ids.passwd}, {"/etc/group", &ids.group}} {
		data, err := b.i.readFile(ctx, b.name, f.path, 4<<20)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("read %s: %w", f.path, err)
		}
		*f.dst = string(data)
	}
	b.ids = ids
	return ids, nil
}

// copy copies the op's sources from the context into the instance, with
// Docker's rules: a directory's contents (not itself) go into the
// destination; a file goes to the destination, or into it when it is a
// directory (it ends in /, or exists as one, or there are several sources).
func (b *incusBuild) copy(ctx context.Context, op buildOp) error {
	uid, gid := uint32(0), uint32(0)
	if op.Chown != "" {
		ids, err := b.idFiles(ctx)
		if err != nil {
			return err
		}
		if uid, gid, err = ids.owner(op.Chown); err != nil {
			return err
		}
	}
	var srcs []string
	for _, s := range op.Sources {
		m, _ := b.ctx.match(s) // checked before the build began
		srcs = append(srcs, m...)
	}
	dest := path.Clean(op.Dest)
	intoDir := strings.HasSuffix(op.Dest, "/") || len(srcs) > 1
	if !intoDir {
		kind, err := b.i.statFile(ctx, b.name, dest)
		if err != nil {
			return err
		}
		intoDir = kind == "directory"
	}
	for _, src := range srcs {
		e := b.ctx.entries[src]
		if e.mode.IsDir() {
			if err := b.mkdirAll(ctx, dest, uid, gid); err != nil {
				return err
			}
			for _, rel := range b.ctx.under(src) {
				sub := strings.TrimPrefix(rel, src+"/")
				if src == "." {
					sub = rel
				}
				if err := b.push(ctx, rel, path.Join(dest, sub), uid, gid); err != nil {
					return err
				}
			}
			continue
		}
		target := dest
		if intoDir {
			target = path.Join(dest, path.Base(src))
		}
		if err := b.mkdirAll(ctx, path.Dir(target), 0, 0); err != nil {
			return err
		}
		if err := b.push(ctx, src, target, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// push copies one context entry to target in the instance.
func (b *incusBuild) push(ctx context.Context, rel, target string, uid, gid uint32) error {
	e := b.ctx.entries[rel]
	perm := uint32(e.mode.Perm())
	var err error
	switch {
	case e.mode.IsDir():
		err = b.i.pushFile(ctx, b.name, target, "directory", uid, gid, perm, nil, 0)
		if err != nil && b.isDir(ctx, target) {
			err = nil
		}
	case e.mode&fs.ModeSymlink != 0:
		err = b.i.pushFile(ctx, b.name, target, "symlink", uid, gid, 0o777, strings.NewReader(e.link), int64(len(e.link)))
	default:
		var f io.ReadCloser
		if f, err = b.ctx.open(rel); err != nil {
			return fmt.Errorf("copy %s: %w", rel, err)
		}
		err = b.i.pushFile(ctx, b.name, target, "file", uid, gid, perm, f, e.size)
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", rel, target, err)
	}
	return nil
}

func (b *incusBuild) isDir(ctx context.Context, p string) bool {
	kind, err := b.i.statFile(ctx, b.name, p)
	return err == nil && kind == "directory"
}

// mkdirAll makes dir and its missing parents (mode 0755); the ones it makes
// are owned by uid:gid.
func (b *incusBuild) mkdirAll(ctx context.Context, dir string, uid, gid uint32) error {
	if dir == "/" || b.isDir(ctx, dir) {
		return nil
	}
	if err := b.mkdirAll(ctx, path.Dir(dir), uid, gid); err != nil {
		return err
	}
	if err := b.i.pushFile(ctx, b.name, dir, "directory", uid, gid, 0o755, nil, 0); err != nil && !b.isDir(ctx, dir) {
		return fmt.Errorf("make directory %s: %w", dir, err)
	}
	return nil
}

// publish stops the build instance and makes an image of it, with cfg as
// its properties; it returns the image's fingerprint.
func (b *incusBuild) publish(ctx context.Context, cfg imageConfig, description string) (string, error) {
	if b.restore != nil {
		if err := b.restore(ctx); err != nil {
			return "", err
		}
	}
	if _, err := b.i.c.run(ctx, http.MethodPut, b.path()+"/state", map[string]any{"action": "stop", "force": true}); err != nil {
		return "", fmt.Errorf("stop build instance %s: %w", b.name, err)
	}
	props := cfg.properties()
	props["description"] = description
	op, err := b.i.c.run(ctx, http.MethodPost, "/1.0/images", map[string]any{
		"source":     map[string]string{"type": "instance", "name": b.name},
		"properties": props,
		"public":     false,
		// Uncompressed: compressing a Node.js image takes minutes on a
		// small machine, and the image never leaves it.
		"compression_algorithm": "none",
	})
	if err != nil {
		return "", fmt.Errorf("publish build instance %s: %w", b.name, err)
	}
	fp, _ := op.Metadata["fingerprint"].(string)
	if len(fp) < 12 {
		return "", fmt.Errorf("publish build instance %s: incus named no fingerprint (%v)", b.name, op.Metadata)
	}
	return fp, nil
}

// idFiles are an instance's /etc/passwd and /etc/group, for resolving the
// names USER and COPY --chown give.
type idFiles struct{ passwd, group string }

// lookup finds name (or a numeric id) in an /etc/passwd or /etc/group
// file and returns its fields.
func lookupIDFile(file, name string) []string {
	sc := bufio.NewScanner(strings.NewReader(file))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 4 && (f[0] == name || f[2] == name) {
			return f
		}
	}
	return nil
}

// user resolves USER's "user[:group]" into ids and a home directory, as
// Docker does: a user's own group unless one is named; a numeric user
// without an entry has group 0 and home /.
func (ids *idFiles) user(spec string) (uid, gid uint32, home string, err error) {
	if spec == "" {
		spec = "0"
	}
	u, g, hasGroup := strings.Cut(spec, ":")
	home = "/"
	if f := lookupIDFile(ids.passwd, u); f != nil && len(f) >= 6 {
		uid, err = parseID(f[2])
		if err == nil {
			gid, err = parseID(f[3])
		}
		home = f[5]
	} else if uid, err = parseID(u); err != nil {
		return 0, 0, "", fmt.Errorf("unable to find user %s: no matching entries in passwd file", u)
	}
	if err != nil {
		return 0, 0, "", fmt.Errorf("user %s: %w", u, err)
	}
	if hasGroup {
		if gid, err = ids.groupID(g); err != nil {
			return 0, 0, "", err
		}
	}
	return uid, gid, home, nil
}

// owner resolves COPY --chown's "user[:group]"; without a group the group
// id is the user id, as in Docker.
func (ids *idFiles) owner(spec string) (uid, gid uint32, err error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	if f := lookupIDFile(ids.passwd, u); f != nil {
		uid, err = parseID(f[2])
	} else if uid, err = parseID(u); err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: unable to find user %s: no matching entries in passwd file", spec, u)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	if !hasGroup {
		return uid, uid, nil
	}
	gid, err = ids.groupID(g)
	if err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	return uid, gid, nil
}

func (ids *idFiles) groupID(g string) (uint32, error) {
	if f := lookupIDFile(ids.group, g); f != nil {
		return parseID(f[2])
	}
	gid, err := parseID(g)
	if err != nil {
		return 0, fmt.Errorf("unable to find group %s: no matching entries in group file", g)
	}
	return gid, nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric id", s)
	}
	return uint32(n), nil
}

// buildOutput passes a build's output to the progress writer as plain
// lines and keeps the current step's last lines for a BuildError.
type buildOutput struct {
	mu   sync.Mutex
	w    io.Writer
	part string
	tail []string
}

func newBuildOutput(w io.Writer) *buildOutput { return &buildOutput{w: w} }

func (o *buildOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	lines := strings.Split(o.part+string(p), "\n")
	o.part = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		o.emit(l)
	}
	return len(p), nil
}

func (o *buildOutput) emit(l string) {
	l = ansiEscape.ReplaceAllString(strings.TrimRight(l, "\r"), "")
	// A progress bar's updates: keep the last.
	if i := strings.LastIndexByte(l, '\r'); i >= 0 {
		l = l[i+1:]
	}
	if o.w != nil {
		fmt.Fprintln(o.w, l)
	}
	o.tail = append(o.tail, l)
	if len(o.tail) > tailLines {
		o.tail = o.tail[1:]
	}
}

// flush ends a last line that had no newline.
func (o *buildOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.part != "" {
		o.emit(o.part)
		o.part = ""
	}
}

// step starts a step: its line, and a new tail.
func (o *buildOutput) step(s string) {
	o.flush()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.w != nil {
		fmt.Fprintln(o.w, s)
	}
	o.tail = nil
}

func (o *buildOutput) startStep() {
	o.mu.Lock()
	o.tail = nil
	o.mu.Unlock()
}

func (o *buildOutput) line(s string) {
	o.flush()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.w != nil {
		fmt.Fprintln(o.w, s)
	}
}

func (o *buildOutput) lastLines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return trimBlank(o.tail)
}
