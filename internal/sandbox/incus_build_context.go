package sandbox

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// buildContext is a BuildRequest's context as the Incus builder reads it:
// an index of its entries (slash-separated paths relative to the context's
// root, "." being the root) and a way to open each file.
type buildContext struct {
	dir     string            // ContextDir, or "" for in-memory Files
	files   map[string][]byte // Files
	entries map[string]contextEntry
}

type contextEntry struct {
	mode fs.FileMode // type and permission bits
	size int64
	link string // a symlink's target
}

// openBuildContext indexes req's context; Files wins over ContextDir, as in
// BuildImage on Docker. Symlinks are kept as links; other special files are
// left out.
func openBuildContext(req BuildRequest) (*buildContext, error) {
	bc := &buildContext{entries: map[string]contextEntry{".": {mode: fs.ModeDir | 0o755}}}
	switch {
	case req.Files != nil:
		bc.files = req.Files
		for name, data := range req.Files {
			clean := path.Clean(name)
			if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
				return nil, fmt.Errorf("build context file %q: not a relative path", name)
			}
			bc.entries[clean] = contextEntry{mode: 0o644, size: int64(len(data))}
			for d := path.Dir(clean); d != "."; d = path.Dir(d) {
				bc.entries[d] = contextEntry{mode: fs.ModeDir | 0o755}
			}
		}
	case req.ContextDir != "":
		bc.dir = req.ContextDir
		err := filepath.WalkDir(req.ContextDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(req.ContextDir, p)
			if err != nil || rel == "." {
				return err
			}
			rel = filepath.ToSlash(rel)
			if req.Skip != nil && req.Skip(rel) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			e := contextEntry{mode: info.Mode() & (fs.ModeType | fs.ModePerm)}
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				if e.link, err = os.Readlink(p); err != nil {
					return err
				}
			case info.Mode().IsRegular():
				e.size = info.Size()
			case !info.IsDir():
				return nil
			}
			bc.entries[rel] = e
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read build context %s: %w", req.ContextDir, err)
		}
	default:
		return nil, errNoContext
	}
	return bc, nil
}

// open returns a regular file's content.
func (bc *buildContext) open(rel string) (io.ReadCloser, error) {
	if bc.files != nil {
		data, ok := bc.files[rel]
		if !ok {
			// The map's key may be unclean ("./x"); find it.
			for name, d := range bc.files {
				if path.Clean(name) == rel {
					data, ok = d, true
				}
			}
		}
		if !ok {
			return nil, fmt.Errorf("%s: %w", rel, fs.ErrNotExist)
		}
		return io.NopCloser(strings.NewReader(string(data))), nil
	}
	// Indexed as a regular file; a link put there since is not followed.
	return os.OpenFile(filepath.Join(bc.dir, filepath.FromSlash(rel)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
}

// readFile reads a regular file of the context (the Dockerfile).
func (bc *buildContext) readFile(rel string) ([]byte, error) {
	rel = path.Clean(rel)
	e, ok := bc.entries[rel]
	if !ok || !e.mode.IsRegular() {
		return nil, fmt.Errorf("%s: no such file in the build context", rel)
	}
	f, err := bc.open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// match returns the entries a COPY source names: itself, or what its
// pattern (path.Match syntax, as Docker's) matches, sorted.
func (bc *buildContext) match(src string) ([]string, error) {
	if _, ok := bc.entries[src]; ok {
		return []string{src}, nil
	}
	if !strings.ContainsAny(src, `*?[\`) {
		return nil, nil
	}
	if _, err := path.Match(src, ""); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", src, err)
	}
	var out []string
	for rel := range bc.entries {
		if ok, _ := path.Match(src, rel); ok {
			out = append(out, rel)
		}
	}
	sort.Strings(out)
	return out, nil
}

// under lists the entries below dir (not dir itself), parents first.
func (bc *buildContext) under(dir string) []string {
	var out []string
	prefix := dir + "/"
	for rel := range bc.entries {
		if dir == "." && rel != "." || strings.HasPrefix(rel, prefix) {
			out = append(out, rel)
		}
	}
	sort.Strings(out) // a parent sorts before its children
	return out
}
