package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// imageBuilder is the engine `airlock image build` builds on and, for the
// kubernetes engine, where the image goes next.
type imageBuilder struct {
	eng  image.Engine
	kind string // the configured engine's kind
	// kube: the configured engine is a cluster, which builds nothing; eng
	// is this machine's, and pusher the same engine.
	kube   bool
	pusher sandbox.ImagePusher
	// registry is [engine.kubernetes] registry ("" none), from where it
	// was set.
	registry, registryFrom string
	close                  func()
}

// imageBuilder is the configured engine, or for Kubernetes the engine
// detection finds on this machine (DOCKER_HOST, Docker's socket, then
// Podman's), as without [engine] kind: the cluster's nodes take images from
// a registry or from `docker save`, so it must be one that can push.
func (f *Factory) imageBuilder(ctx context.Context, res *config.Resolved) (imageBuilder, error) {
	ep, err := f.chooseEngine()
	if err != nil {
		return imageBuilder{}, err
	}
	if ep.Kind != sandbox.KindKubernetes {
		eng, err := f.imageEngine(ctx)
		return imageBuilder{eng: eng, kind: ep.Kind, close: func() {}}, err
	}
	local, err := sandbox.Choose("", sandbox.Detect(f.Getenv))
	if err != nil {
		return imageBuilder{}, err
	}
	eng, err := sandbox.Open(local)
	if err != nil {
		return imageBuilder{}, fmt.Errorf("the kubernetes engine's images are built on this machine's engine: %w", err)
	}
	closeEng := func() {
		if c, ok := eng.(io.Closer); ok {
			c.Close()
		}
	}
	if err := eng.Ping(ctx); err != nil {
		closeEng()
		return imageBuilder{}, fmt.Errorf("the kubernetes engine's images are built on this machine's engine (%s: %s): %w", local.Kind, local.Why, err)
	}
	caps := sandbox.CapsOf(eng)
	if caps.Build == nil || caps.Import == nil || caps.Push == nil {
		closeEng()
		return imageBuilder{}, fmt.Errorf("the kubernetes engine's images are built by Docker or Podman on this machine, which push them to a registry or save them for the nodes; the engine found is %s (%s), which cannot: start Docker or Podman, or set DOCKER_HOST: %w",
			local.Kind, local.Why, sandbox.ErrUnsupported)
	}
	return imageBuilder{
		eng:  imageEngine{Engine: eng, ImageBuilder: caps.Build, ImageImporter: caps.Import},
		kind: ep.Kind, kube: true, pusher: caps.Push,
		registry: res.Config.Engine.Kubernetes.Registry, registryFrom: res.From("engine.kubernetes.registry"),
		close: closeEng,
	}, nil
}

// pushOrSay pushes ref to the registry as the pods will pull it, or says
// why it did not and what the user does instead.
func (b imageBuilder) pushOrSay(ctx context.Context, progress io.Writer, ref string, noPush bool) error {
	target := sandbox.RegistryRef(b.registry, ref)
	switch {
	case b.registry == "":
		fmt.Fprintf(progress, "Not pushed: no [engine.kubernetes] registry; load %s into the cluster's nodes (docs/kubernetes.md, \"Images\")\n", ref)
		return nil
	case noPush:
		fmt.Fprintf(progress, "Not pushed (--no-push): pods pull %s\n", target)
		return nil
	}
	fail := func(err error) error {
		return fmt.Errorf("push %s to registry %s (engine.kubernetes.registry, %s): %w", ref, b.registry, b.registryFrom, err)
	}
	auth, who, err := registryAuth(target)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(progress, "Pushing %s (%s)\n", target, who)
	digest, err := b.pusher.PushImage(ctx, sandbox.PushRequest{Source: ref, Target: target, Auth: auth, Progress: progress})
	if err != nil {
		return fail(err)
	}
	if digest != "" {
		digest = " (" + digest + ")"
	}
	fmt.Fprintf(progress, "Pushed: %s%s\n", target, digest)
	return nil
}

// registryAuth finds the credentials for target's registry where `docker
// login` and `podman login` keep them: go-containerregistry's default
// keychain reads $DOCKER_CONFIG/config.json or ~/.docker/config.json
// (with its credential helpers), then $REGISTRY_AUTH_FILE or Podman's
// auth.json. None there: anonymous. It says which, without the secret.
func registryAuth(target string) (sandbox.RegistryAuth, string, error) {
	ref, err := name.ParseReference(target)
	if err != nil {
		return sandbox.RegistryAuth{}, "", fmt.Errorf("image reference %s: %w", target, err)
	}
	reg := ref.Context().Registry
	a, err := authn.DefaultKeychain.Resolve(reg)
	if err != nil {
		return sandbox.RegistryAuth{}, "", fmt.Errorf("find the credentials for %s (docker login, podman login): %w", reg.RegistryStr(), err)
	}
	if a == authn.Anonymous {
		return sandbox.RegistryAuth{}, "anonymously: no docker or podman login for " + reg.RegistryStr(), nil
	}
	cfg, err := a.Authorization()
	if err != nil {
		return sandbox.RegistryAuth{}, "", fmt.Errorf("read the credentials for %s: %w", reg.RegistryStr(), err)
	}
	auth := sandbox.RegistryAuth{Username: cfg.Username, Password: cfg.Password, IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken}
	who := "with your login for " + reg.RegistryStr()
	if cfg.Username != "" {
		who += " as " + cfg.Username
	}
	return auth, who, nil
}
