package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// registryLookupTimeout bounds the question to the registry: a registry
// this machine cannot reach may still serve the nodes, so waiting longer
// would only delay the start.
const registryLookupTimeout = 10 * time.Second

// RegistryHolds asks the registry, as this machine reaches it with the
// user's credentials (where `docker login` and `podman login` keep them),
// whether it holds ref. Only the registry's own "not found" is an answer of
// false; a registry that cannot be reached, or that refuses this machine,
// is no answer (err): the nodes may reach it where this machine does not,
// or have credentials of their own.
func RegistryHolds(ctx context.Context, ref string) (bool, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return false, fmt.Errorf("image reference %s: %w", ref, err)
	}
	ctx, cancel := context.WithTimeout(ctx, registryLookupTimeout)
	defer cancel()
	_, err = remote.Head(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ask registry %s for %s: %w", r.Context().RegistryStr(), ref, err)
	}
	return true, nil
}
