package image

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// Store is what listing and pruning need from an engine.
type Store interface {
	Images(ctx context.Context, prefixes []string) ([]sandbox.ImageInfo, error)
	RemoveImage(ctx context.Context, ref string) error
}

// Prefixes are the starts of the references of airlock's images: the
// default images, their bootstrapped bases and every project's images.
func Prefixes() []string { return append(defaultPrefixes(), BaseRepo+":", ProjectRepoPrefix) }

// defaultPrefixes start the references of every agent's default images.
func defaultPrefixes() []string {
	var p []string
	for _, a := range agent.All() {
		p = append(p, Repo(a)+":")
	}
	return p
}

// ProjectPrefix starts the references of the images built from the project
// whose .airlock directory is dockerfileDir.
func ProjectPrefix(dockerfileDir string) (string, error) {
	dir, err := filepath.Abs(dockerfileDir)
	if err != nil {
		return "", err
	}
	return ProjectRepoPrefix + sanitizeName(filepath.Base(filepath.Dir(dir))) + ":", nil
}

// List returns airlock's images, newest first.
func List(ctx context.Context, st Store) ([]sandbox.ImageInfo, error) {
	imgs, err := st.Images(ctx, Prefixes())
	if err != nil {
		return nil, err
	}
	sort.SliceStable(imgs, func(a, b int) bool { return imgs[a].Created.After(imgs[b].Created) })
	return imgs, nil
}

// Pruned is what Prune did.
type Pruned struct {
	Removed []string // references removed
	InUse   []string // references kept because a container uses their image
}

// PruneScope is where Prune looks: the default images and bootstrapped
// bases, and the images of the project whose .airlock directory is
// projectDir ("" for none). Other projects' images are left alone: which
// of theirs is current is theirs to know.
func PruneScope(projectDir string) ([]string, error) {
	prefixes := append(defaultPrefixes(), BaseRepo+":")
	if projectDir != "" {
		p, err := ProjectPrefix(projectDir)
		if err != nil {
			return nil, err
		}
		prefixes = append(prefixes, p)
	}
	return prefixes, nil
}

// Prune removes the images with a reference starting with one of prefixes,
// except the images keep's references name (Keep), which are kept whole.
func Prune(ctx context.Context, st Store, prefixes, keep []string) (Pruned, error) {
	imgs, err := st.Images(ctx, prefixes)
	if err != nil {
		return Pruned{}, err
	}
	kept := map[string]bool{}
	for _, r := range keep {
		kept[r] = true
	}
	var res Pruned
	for _, img := range imgs {
		whole := false
		for _, r := range img.Refs {
			whole = whole || kept[r]
		}
		if whole {
			continue
		}
		for _, r := range img.Refs {
			err := st.RemoveImage(ctx, r)
			switch {
			case errors.Is(err, sandbox.ErrInUse):
				res.InUse = append(res.InUse, r)
			case err != nil:
				return res, fmt.Errorf("prune images: %w", err)
			default:
				res.Removed = append(res.Removed, r)
			}
		}
	}
	return res, nil
}

// Keep lists the references Prune must keep for spec and the project
// image projectRef ("" for none): what `airlock run` uses and builds on now.
func Keep(spec Spec, projectRef string) []string {
	spec = spec.withDefaults()
	if spec.Base == BootstrapBase && spec.Mirror == "" {
		spec.Mirror, _ = DetectMirror(aptDir)
	}
	keep := []string{DefaultRef(spec), LatestRef(spec.Agent), spec.baseRef()}
	if projectRef != "" {
		keep = append(keep, projectRef)
	}
	return keep
}
