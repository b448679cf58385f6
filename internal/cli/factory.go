package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/provider"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Factory holds the dependencies commands share. The expensive ones are
// made on first use, so `airlock config show` never talks to the engine.
type Factory struct {
	IO      *IOStreams
	Getenv  func(string) string
	Environ func() []string
	Now     func() time.Time
	// Getwd is where the user runs airlock; the project is the repository
	// containing it.
	Getwd func() (string, error)
	UID   int
	GID   int

	storeOnce sync.Once
	store     *store.Store
	storeErr  error

	// EngineKind is --engine: "docker", "podman", "incus", or "" for
	// [engine] kind, then autodetection.
	EngineKind string

	engineOnce sync.Once
	engine     sandbox.Engine
	caps       sandbox.Caps
	endpoint   sandbox.Endpoint
	engineErr  error

	// cloud keeps one credentials source per provider setting, so that
	// what the run fetched first is refreshed from the same cache.
	cloudMu sync.Mutex
	cloud   map[provider.Settings]provider.Source
}

// NewFactory wires the real dependencies.
func NewFactory() *Factory {
	return &Factory{
		IO:      System(),
		Getenv:  os.Getenv,
		Environ: os.Environ,
		Now:     time.Now,
		Getwd:   os.Getwd,
		UID:     os.Getuid(),
		GID:     os.Getgid(),
	}
}

// LookupEnv is os.LookupEnv over the injected environment.
func (f *Factory) LookupEnv(name string) (string, bool) {
	for _, kv := range f.Environ() {
		if len(kv) > len(name) && kv[len(name)] == '=' && kv[:len(name)] == name {
			return kv[len(name)+1:], true
		}
	}
	return "", false
}

// Store opens the run registry.
func (f *Factory) Store() (*store.Store, error) {
	f.storeOnce.Do(func() {
		dir, err := store.DefaultDir(f.Getenv)
		if err != nil {
			f.storeErr = err
			return
		}
		f.store, f.storeErr = store.Open(dir)
	})
	return f.store, f.storeErr
}

// Engine connects to the container engine chosen by --engine, else
// AIRLOCK_ENGINE, else [engine] kind, else autodetection (sandbox.Detect). It does not contact
// it yet. Upper layers hold the interface, never a backend.
func (f *Factory) Engine() (sandbox.Engine, error) {
	f.engineOnce.Do(func() {
		ep, err := f.chooseEngine()
		if err != nil {
			f.engineErr = err
			return
		}
		f.endpoint = ep
		if f.engine, f.engineErr = sandbox.Open(ep); f.engineErr == nil {
			f.caps = sandbox.CapsOf(f.engine)
		}
	})
	return f.engine, f.engineErr
}

// closeEngine closes the engine, if one was made: it waits for what the
// engine still does in the background (Incus' deletions of ended
// instances), so that nothing a command removed outlives it.
func (f *Factory) closeEngine() {
	if c, ok := f.engine.(io.Closer); ok && f.engine != nil {
		c.Close()
	}
}

// EngineCaps are the chosen engine's optional capabilities, looked up once
// when it was made.
func (f *Factory) EngineCaps() (sandbox.Caps, error) {
	if _, err := f.Engine(); err != nil {
		return sandbox.Caps{}, err
	}
	return f.caps, nil
}

// engineKind is the configured kind, and where it was configured, and the
// [engine] settings.
func (f *Factory) engineKind() (kind, from string, eng config.Engine, nestingFrom string) {
	project := ""
	if wd, err := f.Getwd(); err == nil {
		project, _ = workspace.RepoRoot(context.Background(), wd)
	}
	res, err := f.loadConfig(project)
	if err != nil {
		// Commands that need no configuration (ls, logs, rm) must still
		// work while a file is being fixed; those that do need it fail
		// on it themselves.
		fmt.Fprintf(f.IO.ErrOut, "airlock: warning: the configuration is not valid, so [engine] is not read; detecting the engine: %v\n", err)
	} else {
		eng = res.Config.Engine
		kind, from, nestingFrom = eng.Kind, res.From("engine.kind"), res.From("engine.incus.nesting")
	}
	if k := f.Getenv("AIRLOCK_ENGINE"); k != "" {
		kind, from = k, "AIRLOCK_ENGINE"
	}
	if f.EngineKind != "" {
		kind, from = f.EngineKind, "flag --engine"
	}
	return kind, from, eng, nestingFrom
}

func (f *Factory) chooseEngine() (sandbox.Endpoint, error) {
	kind, from, eng, nestingFrom := f.engineKind()
	ep, err := sandbox.Choose(kind, sandbox.Detect(f.Getenv))
	if err != nil {
		return sandbox.Endpoint{}, fmt.Errorf("%s: %w", from, err)
	}
	if kind != "" {
		ep.Why = from + ": " + ep.Why
	}
	if eng.Incus.Nesting && ep.Kind != sandbox.KindIncus {
		return sandbox.Endpoint{}, fmt.Errorf("engine.incus.nesting is true (%s), but the engine is %s (%s): running containers inside the sandbox is offered on Incus only; use --engine incus, or set engine.incus.nesting = false",
			nestingFrom, ep.Kind, ep.Why)
	}
	ep.Incus = sandbox.IncusOptions{Pool: eng.Incus.Pool, Network: eng.Incus.Network, Nesting: eng.Incus.Nesting}
	if ep.Kind == sandbox.KindKubernetes {
		ep.Kubernetes = kubernetesOptions(eng.Kubernetes, f.Getenv)
		ep.Why = from + ": the cluster of " + cmp.Or(ep.Kubernetes.Kubeconfig, "~/.kube/config") + ", context " + cmp.Or(ep.Kubernetes.Context, "(current)")
	}
	return ep, nil
}

// kubernetesOptions are the Kubernetes engine's settings from
// [engine.kubernetes]; the kubeconfig comes from KUBECONFIG when the
// config names none, as kubectl's does.
func kubernetesOptions(k config.EngineKubernetes, getenv func(string) string) sandbox.KubernetesOptions {
	opts := sandbox.KubernetesOptions{
		Kubeconfig:   cmp.Or(k.Kubeconfig, getenv("KUBECONFIG")),
		Context:      k.Context,
		Namespace:    k.Namespace,
		RuntimeClass: k.RuntimeClass,
		StorageClass: k.StorageClass,
		Registry:     k.Registry,
		Warm:         k.Warm,
		ClusterCIDRs: k.ClusterCIDRs,
	}
	for _, kv := range k.NodeSelector {
		name, value, _ := strings.Cut(kv, "=")
		if opts.NodeSelector == nil {
			opts.NodeSelector = map[string]string{}
		}
		opts.NodeSelector[name] = value
	}
	return opts
}

// PingedEngine is Engine, checked to answer.
func (f *Factory) PingedEngine(ctx context.Context) (sandbox.Engine, error) {
	eng, err := f.Engine()
	if err != nil {
		return nil, err
	}
	if err := eng.Ping(ctx); err != nil {
		return nil, err
	}
	return eng, nil
}

func (f *Factory) errorf(format string, args ...any) {
	fmt.Fprintf(f.IO.ErrOut, format+"\n", args...)
}
