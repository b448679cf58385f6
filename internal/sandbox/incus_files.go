package sandbox

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Incus reaches into running instances only (its exec), and its file API
// sees a stopped instance's root file system without the disk devices
// mounted on it. A stopped sandbox's mounts (its /workspace, its logs) are
// directories on the host, though: Stat and CopyFrom read them there, inside
// an os.Root of the mount's source, so that no link the agent left leads
// out of it, and open nothing but regular files (no FIFO blocks them).

// stoppedMount finds the disk device of the stopped instance id that holds
// p, and p's path below its source ("." for the source itself).
func (i *Incus) stoppedMount(ctx context.Context, id, p string) (source, rel string, err error) {
	var inst struct {
		incusInstance
		Devices map[string]map[string]string `json:"expanded_devices"`
	}
	if err := i.c.get(ctx, instancePath(id), &inst); err != nil {
		return "", "", err
	}
	// An instance whose init has ended is read like a stopped one: its
	// processes are gone, and Incus' exec no longer reaches it.
	if i.incusStatus(ctx, inst.incusInstance) == "Running" {
		return "", "", nil
	}
	p = path.Clean(p)
	best := ""
	for _, d := range inst.Devices {
		target := path.Clean(d["path"])
		if d["type"] != "disk" || target == "/" || d["source"] == "" {
			continue
		}
		if (p == target || strings.HasPrefix(p, target+"/")) && len(target) > len(best) {
			best, source = target, d["source"]
		}
	}
	if best == "" {
		return "", "", fmt.Errorf("instance %s is not running, and %s is not in one of its mounts: Incus reaches into running instances only", id, p)
	}
	rel = strings.TrimPrefix(strings.TrimPrefix(p, best), "/")
	if rel == "" {
		rel = "."
	}
	return source, rel, nil
}

// statHost is Stat of rel in the host directory source.
func statHost(source, rel string) (PathInfo, error) {
	root, err := os.OpenRoot(source)
	if err != nil {
		return PathInfo{}, err
	}
	defer root.Close()
	fi, err := root.Lstat(rel)
	if errors.Is(err, os.ErrNotExist) {
		return PathInfo{}, fmt.Errorf("%s: %w", rel, ErrNotFound)
	}
	if err != nil {
		return PathInfo{}, err
	}
	info := PathInfo{Name: fi.Name(), Size: fi.Size(), Mode: fi.Mode(), ModTime: fi.ModTime()}
	if rel == "." {
		info.Name = filepath.Base(source)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		info.LinkTarget, _ = root.Readlink(rel)
	}
	return info, nil
}

// tarHost writes rel in the host directory source to w as a tar stream
// named name at its top.
func tarHost(w io.Writer, source, rel, name string) error {
	root, err := os.OpenRoot(source)
	if err != nil {
		return err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	if err := tarHostEntry(tw, root, rel, name, 0); err != nil {
		return err
	}
	return tw.Close()
}

// maxTarDepth bounds the recursion into the agent's directories.
const maxTarDepth = 256

func tarHostEntry(tw *tar.Writer, root *os.Root, rel, name string, depth int) error {
	if depth > maxTarDepth {
		return fmt.Errorf("%s: nested deeper than %d directories", name, maxTarDepth)
	}
	fi, err := root.Lstat(rel)
	if err != nil {
		return err
	}
	link := ""
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		if link, err = root.Readlink(rel); err != nil {
			return err
		}
	case fi.Mode()&os.ModeSocket != 0:
		return nil // tar has no sockets
	}
	// Devices and FIFOs go as headers, never opened: the reader decides
	// what to do with them (the host's cp leaves them out, and says so).
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name, h.Uname, h.Gname = name, "", ""
	if fi.IsDir() {
		h.Name += "/"
	}
	switch {
	case fi.Mode().IsRegular():
		f, err := root.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		now, err := f.Stat()
		if err != nil || !now.Mode().IsRegular() {
			return fmt.Errorf("%s: changed while copied", name)
		}
		h.Size = now.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		// A file that shrinks meanwhile ends the stream with an error; one
		// that grows is cut at the size in the header.
		if _, err := io.CopyN(tw, f, h.Size); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	case fi.IsDir():
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		d, err := root.OpenFile(rel, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := tarHostEntry(tw, root, path.Join(rel, n), name+"/"+n, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return tw.WriteHeader(h)
}
