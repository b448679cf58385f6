// Package archive moves files between the host and a sandbox as tar
// streams. What comes out of a sandbox is hostile: Extract writes regular
// files and directories only, never outside its destination, with tame
// modes.
package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Skipped is an entry Extract left out, and why.
type Skipped struct {
	Name   string
	Reason string
}

// Extract writes the tar stream r below dest, an existing directory. The
// first element of every entry's name is replaced by rename, when given
// (so `cp RUN:/workspace/out DEST` can name the copy DEST). Entries that
// are not regular files or directories (links, devices, fifos) are skipped
// and reported; a name that is absolute or climbs out with ".." fails the
// whole extraction. Writes go through an os.Root, so a symbolic link
// already in dest cannot lead a write outside it either. Files get mode
// 0644 or 0755, directories 0755: no set-id bits, nothing writable by
// others.
func Extract(r io.Reader, dest, rename string) ([]Skipped, error) {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return nil, fmt.Errorf("extract into %s: %w", dest, err)
	}
	defer root.Close()
	var skipped []Skipped
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return skipped, nil
		}
		if err != nil {
			return skipped, fmt.Errorf("extract into %s: %w", dest, err)
		}
		name, err := safeName(h.Name, rename)
		if err != nil {
			return skipped, fmt.Errorf("extract into %s: %w", dest, err)
		}
		if name == "." && rename == "" {
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := mkdirAll(root, name); err != nil {
				return skipped, fmt.Errorf("extract %s into %s: %w", h.Name, dest, err)
			}
		case tar.TypeReg:
			if err := mkdirAll(root, path.Dir(name)); err != nil {
				return skipped, fmt.Errorf("extract %s into %s: %w", h.Name, dest, err)
			}
			if err := writeFile(root, name, tr, fileMode(h.Mode)); err != nil {
				return skipped, fmt.Errorf("extract %s into %s: %w", h.Name, dest, err)
			}
		default:
			skipped = append(skipped, Skipped{Name: h.Name, Reason: kind(h.Typeflag)})
		}
	}
}

// safeName cleans a tar entry's name into a relative slash path, or refuses
// it.
func safeName(name, rename string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("entry %q: bad name", name)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q: absolute path", name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("entry %q: climbs out with ..", name)
		}
	}
	clean := path.Clean(name)
	if rename != "" {
		_, rest, _ := strings.Cut(clean, "/")
		clean = path.Join(rename, rest)
	}
	if !fs.ValidPath(clean) {
		return "", fmt.Errorf("entry %q: bad name", name)
	}
	return clean, nil
}

func mkdirAll(root *os.Root, name string) error {
	if name == "." {
		return nil
	}
	return root.MkdirAll(name, 0o755)
}

func writeFile(root *os.Root, name string, r io.Reader, mode os.FileMode) error {
	// Replace rather than write through: a file of that name may be a
	// hard link to something the user cares about.
	if fi, err := root.Lstat(name); err == nil {
		if fi.IsDir() {
			return errors.New("a directory of that name is in the way")
		}
		if err := root.Remove(name); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func fileMode(m int64) os.FileMode {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

func kind(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("tar entry type %q", t)
}

// Create writes src (a file or directory on the host) as a tar stream named
// name at its top, owned by uid:gid, to w. Symbolic links are kept as links;
// other special files are refused.
func Create(w io.Writer, src, name string, uid, gid int) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		entry := path.Join(name, filepath.ToSlash(rel))
		link := ""
		switch {
		case info.Mode().IsRegular(), info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: not a regular file, directory or link", p)
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = entry
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = uid, gid, "", ""
		h.Mode &^= 0o7000
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive %s: %w", src, err)
	}
	return tw.Close()
}
