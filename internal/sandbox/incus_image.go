package sandbox

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"time"
)

// ImportImage makes an Incus image from a root file system tar stream and
// points the alias ref at it. Incus takes a "unified" tarball (metadata.yaml
// beside rootfs/), made here on the fly: the stream is rewritten entry by
// entry, never held in memory. An alias that pointed elsewhere is moved;
// the image it left is deleted when nothing else uses it.
func (i *Incus) ImportImage(ctx context.Context, r io.Reader, ref string) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(unifiedTarball(pw, r, ref)) }()
	defer pr.Close()
	resp, err := i.c.raw(ctx, http.MethodPost, "/1.0/images", pr, http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	r2, err := readEnvelope(http.MethodPost, "/1.0/images", resp)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	op, err := asyncOperation(http.MethodPost, "/1.0/images", r2)
	if err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	if op, err = i.c.wait(ctx, op.ID, -1); err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	fp, _ := op.Metadata["fingerprint"].(string)
	if fp == "" {
		return fmt.Errorf("import image %s: incus named no fingerprint", ref)
	}
	return i.SetImageAlias(ctx, ref, fp)
}

// SetImageAlias points alias at the image fingerprint, replacing an alias
// of that name; the image it pointed at before is deleted when it has no
// alias left.
func (i *Incus) SetImageAlias(ctx context.Context, alias, fingerprint string) error {
	var old struct {
		Target string `json:"target"`
	}
	err := i.c.get(ctx, "/1.0/images/aliases/"+url.PathEscape(alias), &old)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := i.c.sync(ctx, http.MethodPost, "/1.0/images/aliases", map[string]string{"name": alias, "target": fingerprint}, nil); err != nil {
			return fmt.Errorf("alias image %s: %w", alias, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("alias image %s: %w", alias, err)
	case old.Target == fingerprint:
		return nil
	}
	if err := i.c.sync(ctx, http.MethodPut, "/1.0/images/aliases/"+url.PathEscape(alias), map[string]string{"target": fingerprint}, nil); err != nil {
		return fmt.Errorf("alias image %s: %w", alias, err)
	}
	var img struct {
		Aliases []struct{} `json:"aliases"`
	}
	if err := i.c.get(ctx, "/1.0/images/"+url.PathEscape(old.Target), &img); err == nil && len(img.Aliases) == 0 {
		// Instances made from it keep their own copy.
		i.c.run(ctx, http.MethodDelete, "/1.0/images/"+url.PathEscape(old.Target), nil)
	}
	return nil
}

// unifiedTarball writes Incus' unified image tarball to w: metadata.yaml,
// then every entry of the root file system tar r under rootfs/.
func unifiedTarball(w io.Writer, r io.Reader, ref string) error {
	tw := tar.NewWriter(w)
	meta := fmt.Sprintf("architecture: %s\ncreation_date: %d\nproperties:\n  description: %q\n  os: airlock\n",
		incusArch(), time.Now().Unix(), "airlock "+ref)
	now := time.Now()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "metadata.yaml", Mode: 0o644, Size: int64(len(meta)), ModTime: now}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, meta); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "rootfs/", Mode: 0o755, ModTime: now}); err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read the root file system: %w", err)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		if name == "" || name == "." {
			continue
		}
		h.Name = "rootfs/" + name
		if h.Typeflag == tar.TypeLink {
			h.Linkname = "rootfs/" + strings.TrimPrefix(strings.TrimPrefix(h.Linkname, "./"), "/")
		}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write the image: %s: %w", name, err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("write the image: %s: %w", name, err)
		}
	}
	return tw.Close()
}

// incusArch is Incus' name of this machine's architecture.
func incusArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// checkStatic refuses a dynamically linked binary.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read the airlock binary %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked, but Incus instances run it as their init: rebuild it with CGO_ENABLED=0 (make build does)", path)
		}
	}
	return nil
}
