package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// BuildRequest describes one image build. The context is either a directory
// on the host (ContextDir) or a set of in-memory files (Files); Files wins
// when both are set, so callers can build without touching the disk.
type BuildRequest struct {
	ContextDir string
	// Skip leaves paths of ContextDir out of the context (rel is
	// slash-separated); a skipped directory is skipped whole.
	Skip       func(rel string) bool
	Files      map[string][]byte // slash-separated path in the context -> content
	Dockerfile string            // path of the Dockerfile within the context; "Dockerfile" when empty
	Tags       []string
	BuildArgs  map[string]string
	Target     string    // the stage of a multi-stage Dockerfile to build; "" the last
	Progress   io.Writer // receives the build output as plain lines; may be nil
}

// BuildError is a failed build step, with the output that led up to it.
type BuildError struct {
	Step    string   // e.g. "Step 5/12 : RUN npm install -g ..."; empty if the failure came before any step
	Message string   // the engine's error message
	Tail    []string // the last lines of build output
}

func (e *BuildError) Error() string {
	var b strings.Builder
	if e.Step != "" {
		fmt.Fprintf(&b, "%s: ", e.Step)
	}
	b.WriteString(e.Message)
	if len(e.Tail) > 0 {
		b.WriteString("\nlast lines of output:\n  ")
		b.WriteString(strings.Join(e.Tail, "\n  "))
	}
	return b.String()
}

// ansiEscape matches the colour codes the builder puts around a step's
// stderr; progress and errors are plain text.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// tailLines is how much output a BuildError keeps: enough to see the failing
// command's complaint, short enough to read in a terminal.
const tailLines = 20

// BuildImage builds an image with the engine's builder and streams its
// output to req.Progress. A failing step becomes a *BuildError.
func (d *Docker) BuildImage(ctx context.Context, req BuildRequest) error {
	var buildCtx bytes.Buffer
	var err error
	switch {
	case req.Files != nil:
		err = tarFiles(&buildCtx, req.Files)
	case req.ContextDir != "":
		err = tarDir(&buildCtx, req.ContextDir, req.Skip)
	default:
		err = errors.New("no build context: set ContextDir or Files")
	}
	if err != nil {
		return fmt.Errorf("build %s: %w", strings.Join(req.Tags, ", "), err)
	}
	args := make(map[string]*string, len(req.BuildArgs))
	for k, v := range req.BuildArgs {
		args[k] = &v
	}
	res, err := d.cli.ImageBuild(ctx, &buildCtx, client.ImageBuildOptions{
		Tags:        req.Tags,
		Dockerfile:  req.Dockerfile,
		BuildArgs:   args,
		Target:      req.Target,
		Remove:      true,
		ForceRemove: true, // a failed step must not leave containers behind either
	})
	if err != nil {
		return d.engineError("build "+strings.Join(req.Tags, ", "), err)
	}
	defer res.Body.Close()
	if err := decodeStream(res.Body, req.Progress); err != nil {
		return fmt.Errorf("build %s: %w", strings.Join(req.Tags, ", "), err)
	}
	return nil
}

// ImportImage creates an image named ref from a root filesystem tarball, as
// `docker import` does.
func (d *Docker) ImportImage(ctx context.Context, r io.Reader, ref string) error {
	res, err := d.cli.ImageImport(ctx, client.ImageImportSource{Source: r, SourceName: "-"}, ref, client.ImageImportOptions{})
	if err != nil {
		return d.engineError("import "+ref, err)
	}
	defer res.Close()
	if err := decodeStream(res, nil); err != nil {
		return fmt.Errorf("import %s: %w", ref, err)
	}
	return nil
}

// decodeStream turns the engine's JSON message stream into plain lines on w
// and its errorDetail into a *BuildError.
func decodeStream(r io.Reader, w io.Writer) error {
	dec := json.NewDecoder(r)
	var (
		step    string
		tail    []string
		partial string // a line the engine split across messages
	)
	emit := func(text string) {
		text = partial + text
		lines := strings.Split(text, "\n")
		partial = lines[len(lines)-1]
		for _, line := range lines[:len(lines)-1] {
			line = ansiEscape.ReplaceAllString(strings.TrimRight(line, "\r"), "")
			if w != nil {
				fmt.Fprintln(w, line)
			}
			switch {
			case strings.HasPrefix(line, "Step "):
				// The tail is the failing step's own output.
				step, tail = line, tail[:0]
			case strings.HasPrefix(line, " ---> "), strings.HasPrefix(line, "Removing intermediate container"):
			default:
				tail = append(tail, line)
				if len(tail) > tailLines {
					tail = tail[1:]
				}
			}
		}
	}
	for {
		var msg jsonstream.Message
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("read engine output: %w", err)
		}
		if msg.Error != nil {
			emit("\n")
			return &BuildError{Step: step, Message: strings.TrimSpace(msg.Error.Message), Tail: trimBlank(tail)}
		}
		switch {
		case msg.Stream != "":
			emit(msg.Stream)
		case msg.Status != "":
			emit(msg.Status + "\n")
		}
	}
	if partial != "" {
		emit("\n")
	}
	return nil
}

func trimBlank(lines []string) []string {
	out := lines[:0:0]
	for _, l := range lines {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// tarFiles writes an in-memory context in a stable order, so identical
// inputs give identical contexts.
func tarFiles(w io.Writer, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, name := range names {
		data := files[name]
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("tar %s: %w", name, err)
		}
	}
	return tw.Close()
}

// tarDir writes a directory tree as a build context. Symlinks are kept as
// links (the builder resolves them inside the context), other special files
// are skipped.
func tarDir(w io.Writer, dir string, skip func(string) bool) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		if skip != nil && skip(filepath.ToSlash(rel)) {
			if entry.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := entry.Info()
		if err != nil {
			return err
		}
		var link string
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		case !info.Mode().IsRegular() && !info.IsDir():
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		// Host ownership means nothing inside the image.
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("tar context %s: %w", dir, err)
	}
	return tw.Close()
}

// Images lists the images with a tag starting with one of prefixes.
func (d *Docker) Images(ctx context.Context, prefixes []string) ([]ImageInfo, error) {
	res, err := d.cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, d.engineError("list images", err)
	}
	var out []ImageInfo
	for _, s := range res.Items {
		tags := s.RepoTags
		if d.podman != nil {
			tags = podmanRefs(tags)
		}
		refs := matchingRefs(tags, prefixes)
		if len(refs) == 0 {
			continue
		}
		out = append(out, ImageInfo{ID: strings.TrimPrefix(s.ID, "sha256:"), Refs: refs, Size: s.Size, Created: time.Unix(s.Created, 0)})
	}
	return out, nil
}

// RemoveImage untags ref; the image goes with its last tag, unless a
// container (even a stopped one) was made from it.
func (d *Docker) RemoveImage(ctx context.Context, ref string) error {
	if _, err := d.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		if cerrdefs.IsConflict(err) {
			return fmt.Errorf("remove image %s: %w: %w", ref, ErrInUse, err)
		}
		return d.engineError("remove image "+ref, err)
	}
	return nil
}
