// Package archive moves files between the host and a sandbox as tar
// streams. What comes out of a sandbox is hostile: Extract writes regular
// files, directories and links that stay inside the copy, never outside its
// destination, with tame modes, within a size and entry budget, and with no
// git metadata that could make git run a command.
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

// Skipped is something Extract left out, and why. Name is the entry's name
// in the stream (so relative to the source's parent); it is written by the
// sandbox, so sanitise it before printing.
type Skipped struct {
	Name   string
	Reason string
}

// Options says where and how much Extract writes.
type Options struct {
	// Rename replaces the first element of every entry's name, when given
	// (so `cp RUN:/workspace/out DEST` can name the copy DEST).
	Rename string
	// MaxBytes caps the total size of the files written; 0 means no cap.
	MaxBytes int64
	// MaxEntries caps the number of entries read; 0 means no cap.
	MaxEntries int
}

// ErrTooLarge is returned when a stream exceeds Options.MaxBytes or
// Options.MaxEntries.
var ErrTooLarge = errors.New("too large")

// Extract writes the tar stream r below dest, an existing directory.
//
// It works in a hidden staging directory inside dest and moves the result
// into place only once the whole stream is read and checked, so a copy
// that fails (too large, a bad name, an interruption) leaves nothing
// behind that looks like a copy. Into an existing directory, the copy is
// merged: files replace files (the name, never what a link there points
// to), directories are merged.
//
// Names that are absolute or climb out with ".." fail the whole
// extraction. Devices, fifos and sockets are left out; so are symbolic
// links whose target is absolute or leaves the copied tree, and hard links
// to anything but a file already in the copy. Links that are kept are made
// after every file is written, so no entry is ever written through a link
// from the same stream. Writes go through an os.Root, so a link already in
// dest cannot lead a write outside it either. Files get mode 0644 or 0755,
// directories 0755: no set-id bits, nothing writable by others.
//
// Every git directory in the copy loses what could make git run a command
// or reach outside the copy: config (replaced by a minimal one), hooks,
// info/attributes, commondir, worktrees and alternates; a .git file is
// kept only when it names a git directory inside the copy. See
// sanitiseGit.
func Extract(r io.Reader, dest string, opts Options) ([]Skipped, error) {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return nil, fmt.Errorf("extract into %s: %w", dest, err)
	}
	defer root.Close()
	tmp, err := os.MkdirTemp(dest, ".airlock-cp-")
	if err != nil {
		return nil, fmt.Errorf("extract into %s: %w", dest, err)
	}
	x := &extractor{root: root, stage: filepath.Base(tmp), opts: opts, tops: map[string]string{}}
	err = x.run(r)
	if err == nil {
		err = x.place()
	}
	if rerr := root.RemoveAll(x.stage); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return x.skipped, fmt.Errorf("extract into %s: %w", dest, err)
	}
	return x.skipped, nil
}

type extractor struct {
	root    *os.Root
	stage   string // staging directory, relative to root
	opts    Options
	bytes   int64
	entries int
	links   []link            // symbolic links, made last
	tops    map[string]string // copy's top names -> names in the stream
	gitDirs map[string]bool   // git directories in the copy
	skipped []Skipped
}

type link struct{ name, target, orig string }

func (x *extractor) skip(name, reason string) {
	x.skipped = append(x.skipped, Skipped{Name: name, Reason: reason})
}

// staged is name's path in the staging directory.
func (x *extractor) staged(name string) string { return path.Join(x.stage, name) }

func (x *extractor) run(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if x.entries++; x.opts.MaxEntries > 0 && x.entries > x.opts.MaxEntries {
			return fmt.Errorf("more than %d entries: %w", x.opts.MaxEntries, ErrTooLarge)
		}
		name, err := safeName(h.Name, x.opts.Rename)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		top, _, _ := strings.Cut(name, "/")
		if _, ok := x.tops[top]; !ok {
			orig, _, _ := strings.Cut(path.Clean(h.Name), "/")
			x.tops[top] = orig
		}
		if err := x.entry(tr, h, name); err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	for _, l := range x.links {
		if _, err := x.root.Lstat(x.staged(l.name)); err == nil {
			x.skip(l.orig, "a symbolic link where the copy has another entry of that name")
			continue
		}
		if !x.realDirs(path.Dir(l.name)) {
			x.skip(l.orig, "a symbolic link below another link of the copy")
			continue
		}
		if err := x.root.MkdirAll(x.staged(path.Dir(l.name)), 0o755); err != nil {
			return fmt.Errorf("%s: %w", l.orig, err)
		}
		if err := x.root.Symlink(l.target, x.staged(l.name)); err != nil {
			return fmt.Errorf("%s: %w", l.orig, err)
		}
	}
	return sanitiseGit(x)
}

// realDirs says whether each element of dir that exists in the stage is a
// directory, not a link: making something below it then writes where the
// name says.
func (x *extractor) realDirs(dir string) bool {
	p := x.stage
	for _, el := range strings.Split(dir, "/") {
		p = path.Join(p, el)
		fi, err := x.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return true
		}
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

func (x *extractor) entry(tr *tar.Reader, h *tar.Header, name string) error {
	switch h.Typeflag {
	case tar.TypeDir:
		return x.root.MkdirAll(x.staged(name), 0o755)
	case tar.TypeReg:
		if h.Size < 0 || x.opts.MaxBytes > 0 && h.Size > x.opts.MaxBytes-x.bytes {
			return fmt.Errorf("the copy is larger than %d bytes: %w", x.opts.MaxBytes, ErrTooLarge)
		}
		x.bytes += h.Size
		if err := x.root.MkdirAll(x.staged(path.Dir(name)), 0o755); err != nil {
			return err
		}
		return writeFile(x.root, x.staged(name), io.LimitReader(tr, h.Size), fileMode(h.Mode))
	case tar.TypeSymlink:
		if isDotGit(path.Base(name)) {
			x.skip(h.Name, "a symbolic link named .git (git would follow it to another repository)")
			return nil
		}
		if !insideTree(name, h.Linkname) {
			x.skip(h.Name, "a symbolic link leading out of the copy, to "+h.Linkname)
			return nil
		}
		x.links = append(x.links, link{name: name, target: h.Linkname, orig: h.Name})
		return nil
	case tar.TypeLink:
		target, err := safeName(h.Linkname, x.opts.Rename)
		if err == nil && target == name {
			return nil // a link to itself: the file is there already
		}
		if err != nil {
			x.skip(h.Name, "a hard link to something outside the copy, "+h.Linkname)
			return nil
		}
		if fi, err := x.root.Lstat(x.staged(target)); err != nil || !fi.Mode().IsRegular() {
			x.skip(h.Name, "a hard link to something that is not a file in the copy, "+h.Linkname)
			return nil
		}
		if err := x.root.MkdirAll(x.staged(path.Dir(name)), 0o755); err != nil {
			return err
		}
		if err := removeFile(x.root, x.staged(name)); err != nil {
			return err
		}
		return x.root.Link(x.staged(target), x.staged(name))
	default:
		x.skip(h.Name, kind(h.Typeflag)+" (cp copies files, directories and links inside the copy only)")
		return nil
	}
}

// insideTree says whether a symbolic link at name (a clean relative path
// whose first element is the copy's top) pointing to target resolves inside
// the copy, whatever other links it passes through: target must be
// relative, and its ".." elements must all come first and not climb above
// the top. A ".." after a link would be resolved from the link's target,
// not lexically, so it is refused.
func insideTree(name, target string) bool {
	if target == "" || strings.HasPrefix(target, "/") || strings.ContainsRune(target, 0) {
		return false
	}
	up, down := 0, false
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
		case "..":
			if down {
				return false
			}
			up++
		default:
			down = true
		}
	}
	depth := strings.Count(name, "/") - 1 // how far the link's directory is below the top
	return depth >= 0 && up <= depth
}

// place moves the staged copy into dest. Every move is planned, and every
// conflict found, before the first one is made.
func (x *extractor) place() error {
	entries, err := fs.ReadDir(x.root.FS(), x.stage)
	if err != nil {
		return err
	}
	var moves [][2]string
	for _, e := range entries {
		if err := x.plan(e.Name(), &moves); err != nil {
			return err
		}
	}
	for _, m := range moves {
		if err := x.root.Rename(m[0], m[1]); err != nil {
			return err
		}
	}
	return nil
}

// plan adds the renames that put the staged name at name in dest, merging
// directories into existing ones. A file replaces a file or link of the
// same name (rename never writes through it); a directory and a
// non-directory of the same name are an error, and so is a git directory
// of the copy meeting an existing one: merging the sandbox's refs, HEAD
// and index into a repository of yours would rewrite it.
func (x *extractor) plan(name string, moves *[][2]string) error {
	from := x.staged(name)
	ti, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		*moves = append(*moves, [2]string{from, name})
		return nil
	}
	if err != nil {
		return err
	}
	fi, err := x.root.Lstat(from)
	if err != nil {
		return err
	}
	switch {
	case fi.IsDir() && ti.IsDir():
		if x.gitDirs[name] {
			return fmt.Errorf("%s: the copy's git directory would be merged into the one already there; copy into a new directory", name)
		}
		entries, err := fs.ReadDir(x.root.FS(), from)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := x.plan(path.Join(name, e.Name()), moves); err != nil {
				return err
			}
		}
		return nil
	case fi.IsDir():
		return fmt.Errorf("%s: a file of that name is in the way of a directory", name)
	case ti.IsDir():
		return fmt.Errorf("%s: a directory of that name is in the way of a file", name)
	}
	*moves = append(*moves, [2]string{from, name})
	return nil
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

// removeFile removes name if it is there and not a directory.
func removeFile(root *os.Root, name string) error {
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("a directory of that name is in the way")
	}
	return root.Remove(name)
}

func writeFile(root *os.Root, name string, r io.Reader, mode os.FileMode) error {
	// Replace rather than write through: a file of that name may be a
	// hard link to another file of the copy.
	if err := removeFile(root, name); err != nil {
		return err
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
	case tar.TypeChar, tar.TypeBlock:
		return "a device"
	case tar.TypeFifo:
		return "a fifo"
	}
	return fmt.Sprintf("a tar entry of type %q", t)
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
