package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Images lists the images with an alias starting with one of prefixes.
func (i *Incus) Images(ctx context.Context, prefixes []string) ([]ImageInfo, error) {
	var imgs []struct {
		Fingerprint string `json:"fingerprint"`
		Aliases     []struct {
			Name string `json:"name"`
		} `json:"aliases"`
		Size       int64     `json:"size"`
		CreatedAt  time.Time `json:"created_at"`
		UploadedAt time.Time `json:"uploaded_at"`
	}
	if err := i.c.get(ctx, "/1.0/images?recursion=1", &imgs); err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []ImageInfo
	for _, img := range imgs {
		var names []string
		for _, a := range img.Aliases {
			names = append(names, a.Name)
		}
		refs := matchingRefs(names, prefixes)
		if len(refs) == 0 {
			continue
		}
		// An image published from an instance or imported carries the
		// time it was made here as its upload time.
		created := img.UploadedAt
		if created.IsZero() || created.Year() < 2000 {
			created = img.CreatedAt
		}
		out = append(out, ImageInfo{ID: img.Fingerprint, Refs: refs, Size: img.Size, Created: created})
	}
	return out, nil
}

// RemoveImage deletes the alias ref, and its image when no alias is left.
// Instances made from an image keep their own copy of it, so an image is
// never in use on Incus.
func (i *Incus) RemoveImage(ctx context.Context, ref string) error {
	var alias struct {
		Target string `json:"target"`
	}
	if err := i.c.get(ctx, "/1.0/images/aliases/"+url.PathEscape(ref), &alias); err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	if err := i.c.sync(ctx, http.MethodDelete, "/1.0/images/aliases/"+url.PathEscape(ref), nil, nil); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	var img struct {
		Aliases []struct{} `json:"aliases"`
	}
	if err := i.c.get(ctx, "/1.0/images/"+url.PathEscape(alias.Target), &img); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	if len(img.Aliases) > 0 {
		return nil
	}
	if _, err := i.c.run(ctx, http.MethodDelete, "/1.0/images/"+url.PathEscape(alias.Target), nil); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("remove image %s (%.12s): %w", ref, alias.Target, err)
	}
	return nil
}
