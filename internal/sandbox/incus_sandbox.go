package sandbox

import (
	"context"
	"fmt"
)

// CreateSandbox is not there yet.
func (i *Incus) CreateSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	return Sandbox{}, fmt.Errorf("incus sandbox: %w", ErrUnsupported)
}

// RestartSandbox is not there yet.
func (i *Incus) RestartSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	return Sandbox{}, fmt.Errorf("incus sandbox: %w", ErrUnsupported)
}

// RemoveProxy removes a sandbox's proxy instance.
func (i *Incus) RemoveProxy(ctx context.Context, name string) error { return i.Remove(ctx, name) }
