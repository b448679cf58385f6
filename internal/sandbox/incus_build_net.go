package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// A build instance reaches apt and npm through its NIC on the configured
// bridge (NAT). Incus leaves the address to a DHCP client in the guest,
// which airlock's bases do not have, so the build instance gets a free
// address as a sandbox's proxy does (proxyNIC: pinned on the NIC, so Incus
// refuses it to any other instance and its dnsmasq never leases it), set by
// LXC before the init starts. Names resolve through the bridge's dnsmasq,
// which forwards to the host's resolvers.

// configureResolver points the running build instance's resolver at the
// bridge, and returns what puts its own /etc/resolv.conf back.
func (b *incusBuild) configureResolver(ctx context.Context) (restore func(context.Context) error, err error) {
	const resolv = "/etc/resolv.conf"
	kind, err := b.i.statFile(ctx, b.name, resolv)
	if err != nil {
		return nil, err
	}
	var old []byte
	if kind == "file" || kind == "symlink" {
		if old, _, err = b.i.readRaw(ctx, b.name, resolv, 1<<20); err != nil {
			return nil, fmt.Errorf("read %s: %w", resolv, err)
		}
	}
	if kind == "symlink" {
		b.i.deleteFile(ctx, b.name, resolv)
	}
	conf := "# airlock image build: the bridge's resolver\nnameserver " + b.nic.gateway + "\n"
	if err := b.i.pushFile(ctx, b.name, resolv, "file", 0, 0, 0o644, strings.NewReader(conf), int64(len(conf))); err != nil {
		return nil, fmt.Errorf("write %s: %w", resolv, err)
	}
	return func(ctx context.Context) error {
		var err error
		switch kind {
		case "":
			err = b.i.deleteFile(ctx, b.name, resolv)
		case "file":
			err = b.i.pushFile(ctx, b.name, resolv, "file", 0, 0, 0o644, strings.NewReader(string(old)), int64(len(old)))
		case "symlink":
			if err = b.i.deleteFile(ctx, b.name, resolv); err == nil {
				err = b.i.pushFile(ctx, b.name, resolv, "symlink", 0, 0, 0o777, strings.NewReader(string(old)), int64(len(old)))
			}
		}
		if err != nil {
			return fmt.Errorf("restore %s: %w", resolv, err)
		}
		return nil
	}, nil
}

// deleteFile removes a file of the instance; a missing one is no error.
func (i *Incus) deleteFile(ctx context.Context, name, path string) error {
	err := i.files.do(ctx, name, true, func() error {
		return i.c.sync(ctx, http.MethodDelete, filePath(name, path), nil, nil)
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
