package sandbox

import (
	"context"
	"fmt"
)

// Incus is the Engine backed by Incus system containers, reached through
// incusd's REST API on its Unix socket (incus_client.go).
type Incus struct {
	c *incusClient
}

// NewIncus connects lazily to incusd at host (unix:///path); "" means
// /var/lib/incus/unix.socket. No request is made until the first call.
func NewIncus(host string) (*Incus, error) {
	c, err := newIncusClient(host)
	if err != nil {
		return nil, err
	}
	return &Incus{c: c}, nil
}

// Kind is KindIncus.
func (i *Incus) Kind() string { return KindIncus }

// Close releases the client's idle connections.
func (i *Incus) Close() error {
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
