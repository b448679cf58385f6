package sandbox

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/moby/moby/client"
)

// RuntimeLister is an engine that can choose the OCI runtime of a container
// (Spec.Runtime) and name the runtimes it has.
type RuntimeLister interface {
	Runtimes(ctx context.Context) ([]string, error)
}

// CheckRuntime says, before anything is created, whether e can run
// containers under the OCI runtime name; "" (the engine's default) always
// can. The error names the runtimes the engine has.
func CheckRuntime(ctx context.Context, e Engine, name string) error {
	if name == "" {
		return nil
	}
	if d, ok := e.(*Docker); ok && d.podman != nil {
		// Podman has its own way to each runtime (podman_runtime.go).
		_, err := d.podman.runtimeClient(ctx, d, name)
		return err
	}
	l, ok := e.(RuntimeLister)
	if !ok {
		return fmt.Errorf("runtime %q: this container engine cannot choose a container's runtime; remove [sandbox] runtime or --runtime", name)
	}
	have, err := l.Runtimes(ctx)
	if err != nil {
		return fmt.Errorf("runtime %q: %w", name, err)
	}
	if slices.Contains(have, name) {
		return nil
	}
	hint := "register it with the engine"
	if name == "runsc" {
		hint = "install gVisor and register it (scripts/setup.sh does both; see docs/gvisor.md)"
	}
	return fmt.Errorf("runtime %q is not one the container engine has (it has: %s): %s, or choose another with [sandbox] runtime or --runtime",
		name, strings.Join(have, ", "), hint)
}

// Runtimes lists the OCI runtimes the daemon has registered, sorted.
func (d *Docker) Runtimes(ctx context.Context) ([]string, error) {
	if d.podman != nil {
		return d.podman.runtimes(ctx, d)
	}
	res, err := d.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return nil, d.engineError("list the engine's runtimes", err)
	}
	names := make([]string, 0, len(res.Info.Runtimes))
	for n := range res.Info.Runtimes {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// checkCreatedRuntime makes sure the engine will run the container it just
// created under the runtime spec asked for, and removes it when not: a
// sandbox silently under another runtime is weaker than the user chose.
func (d *Docker) checkCreatedRuntime(ctx context.Context, id string, spec Spec) error {
	if spec.Runtime == "" {
		return nil
	}
	var got string
	var err error
	if d.podman != nil {
		got, err = d.podman.createdRuntime(ctx, d, id)
	} else {
		var res client.ContainerInspectResult
		res, err = d.containerInspect(ctx, id)
		if err == nil && res.Container.HostConfig != nil {
			got = res.Container.HostConfig.Runtime
		}
	}
	if err == nil && got == spec.Runtime {
		return nil
	}
	d.Remove(context.WithoutCancel(ctx), id)
	if err != nil {
		return d.engineError("check the runtime of container "+spec.Name, err)
	}
	if got == "" {
		got = "(none)"
	}
	return fmt.Errorf("create container %s: asked for runtime %q, the engine chose %q; removed it", spec.Name, spec.Runtime, got)
}
