package sandbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// PushImage tags req.Source as req.Target and pushes it, as `docker tag`
// and `docker push` would, and returns the digest the registry keeps it
// under ("" when the engine does not say). The target's tag is removed
// again, pushed or not, unless the image had it before: the image keeps
// the names it had, so `image ls` and `prune` see it as before, and a
// failed push leaves nothing behind.
func (d *Docker) PushImage(ctx context.Context, req PushRequest) (digest string, err error) {
	// A name the image had already stays.
	had, err := d.ImageExists(ctx, req.Target)
	if err != nil {
		return "", err
	}
	if _, err := d.cli.ImageTag(ctx, client.ImageTagOptions{Source: req.Source, Target: req.Target}); err != nil {
		return "", d.engineError("tag "+req.Source+" as "+req.Target, err)
	}
	if !had {
		defer func() {
			// Only the name goes: the image has Source's too.
			if _, rerr := d.cli.ImageRemove(context.WithoutCancel(ctx), req.Target, client.ImageRemoveOptions{}); rerr != nil && err == nil {
				err = d.engineError("remove the tag "+req.Target+" after pushing it", rerr)
			}
		}()
	}
	auth, err := encodeAuth(req.Auth)
	if err != nil {
		return "", err
	}
	res, err := d.cli.ImagePush(ctx, req.Target, client.ImagePushOptions{RegistryAuth: auth})
	if err != nil {
		return "", d.engineError("push "+req.Target, err)
	}
	defer res.Close()
	digest, err = decodePush(res, req.Progress)
	if err != nil {
		if d.podman != nil && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
			// Docker takes 127.0.0.0/8 registries as plain HTTP; Podman
			// takes none unless told.
			host, _, _ := strings.Cut(req.Target, "/")
			return "", fmt.Errorf("push %s: %w (a plain-HTTP registry: list it in Podman's registries.conf, [[registry]] location = %q, insecure = true)", req.Target, err, host)
		}
		return "", fmt.Errorf("push %s: %w", req.Target, err)
	}
	return digest, nil
}

// encodeAuth is the X-Registry-Auth header's value: the credentials as
// JSON, base64url-encoded as the docker CLI sends them; "{}" when
// anonymous (Docker refuses a push without the header).
func encodeAuth(a RegistryAuth) (string, error) {
	b, err := json.Marshal(registry.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken})
	if err != nil {
		return "", fmt.Errorf("encode the registry credentials: %w", err)
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

// decodePush reads the engine's push stream: one line per layer when it is
// done (not every progress tick), the digest from the final aux message,
// and the engine's error as the error.
func decodePush(r io.Reader, w io.Writer) (string, error) {
	dec := json.NewDecoder(r)
	digest := ""
	for {
		var msg jsonstream.Message
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return digest, nil
			}
			return "", fmt.Errorf("read engine output: %w", err)
		}
		// The registry writes part of these messages (its errors, its
		// digests): plain lines, no terminal controls.
		if msg.Error != nil {
			return "", errors.New(untrusted.Line(strings.TrimSpace(msg.Error.Message)))
		}
		if msg.Aux != nil {
			var aux struct{ Digest string }
			if json.Unmarshal(*msg.Aux, &aux) == nil && aux.Digest != "" {
				digest = aux.Digest
			}
		}
		switch msg.Status {
		case "", "Preparing", "Waiting", "Pushing":
			continue
		}
		if w == nil {
			continue
		}
		line := msg.Status
		if msg.ID != "" {
			line = msg.ID + ": " + line
		}
		fmt.Fprintln(w, untrusted.Line(line))
	}
}
