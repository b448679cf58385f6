// Package image builds the container images agents run in: the default
// agent image (Debian, git, Node.js, a pinned Claude Code, tini, user agent)
// and a project's own image layered on top of it from .airlock/Dockerfile.
//
// Tags are content addresses: they carry a hash of every build input, so an
// existing tag means the image is current and nothing is rebuilt.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/devcontainer"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// Repo is the repository of an agent's default image: "airlock-claude".
func Repo(a agent.Agent) string { return "airlock-" + a.Name() }

// LatestRef always names the most recently built default image of an agent.
func LatestRef(a agent.Agent) string { return Repo(a) + ":latest" }

const (
	// DefaultBase is the FROM image when the Spec names none. It needs a
	// registry; machines without one use BootstrapBase.
	DefaultBase = "debian:bookworm-slim"
	// BootstrapBase as Spec.Base builds the base from Debian packages with
	// debootstrap instead of pulling it.
	BootstrapBase = "bootstrap"
	// HostCABundle is where Debian hosts keep their trusted CAs; callers
	// resolve a "host" CA setting to this file's contents.
	HostCABundle = "/etc/ssl/certs/ca-certificates.crt"
	// BaseArg is the build argument through which a project Dockerfile
	// receives the default image: "ARG AIRLOCK_BASE" then "FROM ${AIRLOCK_BASE}".
	BaseArg = "AIRLOCK_BASE"
)

// aptDir holds the host's apt sources, where the bootstrap mirror comes from.
const aptDir = "/etc/apt"

// Spec holds the inputs of an agent's default image. There is one image
// per agent rather than one with every agent: each is smaller, an agent's
// release is upgraded without rebuilding the others, and one agent's
// failing install does not stop the rest; the engine shares their common
// layers (everything before the agent's install step), so the disk cost
// of several is little more than of one.
type Spec struct {
	Base    string      // FROM image, or BootstrapBase; DefaultBase when empty
	Agent   agent.Agent // the agent installed; Claude Code when nil
	Version string      // the agent's release; its DefaultVersion when empty
	CACerts [][]byte    // extra PEM CA certificates, trusted during the build and at run time
	Mirror  string      // Debian mirror for BootstrapBase; Build detects it from the host's apt when empty

	// dev is the project's dev container whose image is Base
	// (devcontainer.go); nil for the default image.
	dev *devcontainer.Config
}

// Engine is what building needs from a container engine.
type Engine interface {
	ImageExists(ctx context.Context, ref string) (bool, error)
	BuildImage(ctx context.Context, req sandbox.BuildRequest) error
	ImportImage(ctx context.Context, r io.Reader, ref string) error
}

func (s Spec) withDefaults() Spec {
	if s.Base == "" {
		s.Base = DefaultBase
	}
	if s.Agent == nil {
		s.Agent = agent.Claude{}
	}
	if s.Version == "" {
		s.Version = s.Agent.DefaultVersion()
	}
	return s
}

// baseRef is the FROM image the Dockerfile names.
func (s Spec) baseRef() string {
	if s.Base == BootstrapBase {
		return BaseRef(s.Mirror)
	}
	return s.Base
}

// DefaultRef returns the content-addressed tag Build gives the default
// image for spec, "airlock-<agent>:<12 hex>", without building it. For a
// BootstrapBase spec with no Mirror it reads the host's apt sources, as
// Build does.
func DefaultRef(spec Spec) string {
	spec = spec.withDefaults()
	if spec.Base == BootstrapBase && spec.Mirror == "" {
		// A failure here fails Build too, with the explanation.
		spec.Mirror, _ = DetectMirror(aptDir)
	}
	h := newHasher()
	h.field("dockerfile", []byte(dockerfile(spec)))
	h.field("base", []byte(spec.baseRef()))
	if spec.Base == BootstrapBase {
		h.field("bootstrap", []byte(bootstrapArgs(spec.Mirror)))
	}
	h.field(spec.Agent.Name(), []byte(spec.Version))
	for _, ca := range spec.CACerts {
		h.field("ca", ca)
	}
	return Repo(spec.Agent) + ":" + h.sum()
}

// Build makes sure the default image for spec exists and returns its tag.
// An existing tag returns at once; otherwise the image is built (and, for a
// Bootstrap spec, its base first), with the engine's output streamed to
// progress, and also tagged LatestRef.
func Build(ctx context.Context, eng Engine, spec Spec, progress io.Writer) (string, error) {
	spec = spec.withDefaults()
	if spec.Base == BootstrapBase && spec.Mirror == "" {
		m, err := DetectMirror(aptDir)
		if err != nil {
			return "", err
		}
		spec.Mirror = m
	}
	ref := DefaultRef(spec)
	ok, err := eng.ImageExists(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	if ok {
		return ref, nil
	}
	if spec.Base == BootstrapBase {
		if _, err := Bootstrap(ctx, eng, spec.Mirror, progress); err != nil {
			return "", err
		}
	}
	if progress != nil {
		fmt.Fprintf(progress, "Building %s (%s %s on %s)\n", ref, spec.Agent.Title(), spec.Version, spec.baseRef())
	}
	req := sandbox.BuildRequest{
		Files:    contextFiles(spec),
		Tags:     []string{ref, LatestRef(spec.Agent)},
		Progress: progress,
	}
	start := time.Now()
	if err := eng.BuildImage(ctx, req); err != nil {
		// err names the tag already.
		return "", fmt.Errorf("default agent image: %w", err)
	}
	if progress != nil {
		fmt.Fprintf(progress, "Agent image %s: built in %.1f s\n", ref, time.Since(start).Seconds())
	}
	return ref, nil
}

func contextFiles(spec Spec) map[string][]byte {
	files := map[string][]byte{"Dockerfile": []byte(dockerfile(spec))}
	for i, ca := range spec.CACerts {
		files[fmt.Sprintf("ca/extra-%02d.crt", i)] = ca
	}
	return files
}

// hasher hashes length-prefixed named fields, so no two different input
// sets can produce the same byte stream.
type hasher struct{ b []byte }

func newHasher() *hasher { return &hasher{} }

func (h *hasher) field(name string, value []byte) {
	h.b = fmt.Appendf(h.b, "%s %d\n", name, len(value))
	h.b = append(h.b, value...)
}

func (h *hasher) sum() string {
	s := sha256.Sum256(h.b)
	return hex.EncodeToString(s[:])[:12]
}

// sanitizeName turns a directory name into a valid image repository
// component: lower-case letters and digits, runs of anything else folded
// into one "-", never at either end.
func sanitizeName(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
		if b.Len() >= 64 {
			break
		}
	}
	if b.Len() == 0 {
		return "project"
	}
	return b.String()
}
