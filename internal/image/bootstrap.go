package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

const (
	bootstrapSuite   = "bookworm"
	bootstrapVariant = "minbase"
	// BaseRepo holds the bootstrapped base images.
	BaseRepo = "airlock-base"
)

// bootstrapArgs are the inputs of a bootstrapped base, for its hash.
func bootstrapArgs(mirror string) string {
	return fmt.Sprintf("debootstrap --arch=%s --variant=%s %s DIR %s", runtime.GOARCH, bootstrapVariant, bootstrapSuite, mirror)
}

// BaseRef is the tag of the base Bootstrap makes from mirror,
// "airlock-base:bookworm-<12 hex>".
func BaseRef(mirror string) string {
	h := newHasher()
	h.field("bootstrap", []byte(bootstrapArgs(mirror)))
	return BaseRepo + ":" + bootstrapSuite + "-" + h.sum()
}

// Bootstrap makes a Debian bookworm base image from packages, for machines
// that cannot pull from a registry: debootstrap into a temporary directory,
// then import it. The result is cached under BaseRef(mirror), so it is made
// once. It needs root and debootstrap.
func Bootstrap(ctx context.Context, eng Engine, mirror string, progress io.Writer) (string, error) {
	if mirror == "" {
		return "", errors.New("bootstrap base image: no Debian mirror given")
	}
	ref := BaseRef(mirror)
	ok, err := eng.ImageExists(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("bootstrap base image %s: %w", ref, err)
	}
	if ok {
		return ref, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("bootstrap base image %s: debootstrap needs root; run as root (e.g. sudo make image) or use a registry base (--base %s)", ref, DefaultBase)
	}
	debootstrap, err := exec.LookPath("debootstrap")
	if err != nil {
		return "", fmt.Errorf("bootstrap base image %s: debootstrap not found; install it (apt-get install debootstrap, or scripts/setup.sh)", ref)
	}

	dir, err := os.MkdirTemp("", "airlock-bootstrap-")
	if err != nil {
		return "", fmt.Errorf("bootstrap base image %s: %w", ref, err)
	}
	defer os.RemoveAll(dir)

	if progress != nil {
		fmt.Fprintf(progress, "Bootstrapping %s from %s\n", ref, mirror)
	}
	start := time.Now()
	out := &tailWriter{w: progress}
	cmd := exec.CommandContext(ctx, debootstrap, "--arch="+runtime.GOARCH, "--variant="+bootstrapVariant, bootstrapSuite, dir, mirror)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bootstrap base image %s: debootstrap %s %s: %w\nlast lines of output:\n  %s",
			ref, bootstrapSuite, mirror, err, strings.Join(out.tail(), "\n  "))
	}
	if err := importDir(ctx, eng, dir, ref); err != nil {
		return "", fmt.Errorf("bootstrap base image %s: %w", ref, err)
	}
	if progress != nil {
		fmt.Fprintf(progress, "Base image %s: made in %.1f s\n", ref, time.Since(start).Seconds())
	}
	return ref, nil
}

// importDir streams dir as a tarball into the engine. GNU tar rather than
// archive/tar because a root filesystem has hard links, device nodes and
// ownership that must survive exactly.
func importDir(ctx context.Context, eng Engine, dir, ref string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", dir, "-cf", "-", ".")
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	importErr := eng.ImportImage(ctx, pipe, ref)
	if importErr != nil {
		// Unblock tar if the engine stopped reading.
		_, _ = io.Copy(io.Discard, pipe)
	}
	waitErr := cmd.Wait()
	if waitErr != nil {
		return fmt.Errorf("tar %s: %w: %s", dir, waitErr, strings.TrimSpace(stderr.String()))
	}
	return importErr
}

// tailWriter passes output on and remembers its last lines for an error.
type tailWriter struct {
	w     io.Writer
	lines []string
	part  string
}

func (t *tailWriter) Write(p []byte) (int, error) {
	if t.w != nil {
		if _, err := t.w.Write(p); err != nil {
			return 0, err
		}
	}
	parts := strings.Split(t.part+string(p), "\n")
	t.part = parts[len(parts)-1]
	t.lines = append(t.lines, parts[:len(parts)-1]...)
	if len(t.lines) > 20 {
		t.lines = t.lines[len(t.lines)-20:]
	}
	return len(p), nil
}

func (t *tailWriter) tail() []string {
	if t.part != "" {
		return append(t.lines, t.part)
	}
	return t.lines
}
