package sandbox

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"
)

// ImageInfo is one image in an engine's store.
type ImageInfo struct {
	ID      string   // the engine's own: Docker's image ID, Incus' fingerprint
	Refs    []string // its references (tags; Incus' aliases), sorted
	Size    int64    // bytes
	Created time.Time
}

// ImageStore lists and removes images (airlock image ls, image prune); an
// optional capability (CapsOf).
type ImageStore interface {
	// Images lists the images that have a reference starting with one of
	// prefixes; only those references are reported.
	Images(ctx context.Context, prefixes []string) ([]ImageInfo, error)
	// RemoveImage removes the reference ref, and the image with its last
	// reference. An image a container still needs is kept, and the error
	// wraps ErrInUse.
	RemoveImage(ctx context.Context, ref string) error
}

// ErrInUse is returned (wrapped) when something is still used.
var ErrInUse = errors.New("in use")

// matchingRefs returns the refs that start with one of prefixes, sorted.
func matchingRefs(refs, prefixes []string) []string {
	var out []string
	for _, r := range refs {
		for _, p := range prefixes {
			if strings.HasPrefix(r, p) {
				out = append(out, r)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}
