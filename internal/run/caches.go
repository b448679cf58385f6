package run

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// cacheTargets are the shared dependency caches a run can opt into, and
// where each tool keeps its cache under the agent's home.
var cacheTargets = map[string]string{
	"npm": containerHome + "/.npm",
	"go":  containerHome + "/go/pkg/mod", // GOMODCACHE's default, $HOME/go/pkg/mod
	"pip": containerHome + "/.cache/pip",
}

// CacheDir is where a project's cache lives on the host:
// <state>/caches/<project hash>/<name>. Runs of one project share it; runs
// of another project never see it.
//
// The caches are host directories, bind-mounted, rather than named volumes:
// the engine creates a named volume owned by root, which the agent (the
// invoking user's uid, never root) cannot write to without a root helper
// container to chown it first; a directory airlock makes itself is owned by
// the agent's uid from the start, and `rm -rf` of the state directory
// removes it like everything else airlock keeps.
func (m *Manager) CacheDir(project, name string) string {
	sum := sha256.Sum256([]byte(project))
	return filepath.Join(m.Store.Dir(), "caches", hex.EncodeToString(sum[:8]), name)
}

// cacheMounts are the shared dependency caches a run mounts. The mount
// points' parents are made in the run's home first: the engine would
// otherwise create them owned by root, and the agent could not write
// beside the cache (say, ~/go/bin next to ~/go/pkg/mod).
func (m *Manager) cacheMounts(r *store.Run, caches []string, uid, gid int) ([]sandbox.Mount, error) {
	home := filepath.Join(m.Store.RunDir(r.ID), "home")
	var mounts []sandbox.Mount
	for _, name := range caches {
		target, ok := cacheTargets[name]
		if !ok {
			return nil, fmt.Errorf("unknown cache %q; caches: go, npm, pip", name)
		}
		src := m.CacheDir(r.Project, name)
		if err := mkdirAllOwned(filepath.Dir(filepath.Dir(src)), src, uid, gid); err != nil {
			return nil, fmt.Errorf("prepare the %s cache: %w", name, err)
		}
		rel := strings.TrimPrefix(target, containerHome+"/")
		if err := mkdirAllOwned(home, filepath.Join(home, rel), uid, gid); err != nil {
			return nil, fmt.Errorf("prepare the %s cache: %w", name, err)
		}
		mounts = append(mounts, sandbox.Mount{Source: src, Target: target})
	}
	return mounts, nil
}

// mkdirAllOwned makes dir and its missing parents below base, owned by
// uid:gid. base itself must exist or is made private to the user.
func mkdirAllOwned(base, dir string, uid, gid int) error {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return err
	}
	rel, err := filepath.Rel(base, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("%s is not under %s", dir, base)
	}
	cur := base
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		cur = filepath.Join(cur, part)
		if err := os.Mkdir(cur, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		// A home restored from an earlier run is the agent's: a symbolic
		// link there must not lead the host to make directories elsewhere.
		if fi, err := os.Lstat(cur); err != nil {
			return err
		} else if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", cur)
		}
		if err := os.Lchown(cur, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return err
		}
	}
	return nil
}
