package sandbox_test

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// PushImage through the real Docker engine to real registries on loopback
// (Docker speaks plain HTTP to 127.0.0.0/8): one that takes the image, one
// that refuses it, and one that wants a login.
func TestDockerPushImage(t *testing.T) {
	d := testkit.Docker(t)
	ctx := context.Background()
	src := "airlock-test-push:1"
	t.Cleanup(func() { d.RemoveImage(context.Background(), src) })
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sandboxtest.BusyboxRootfs(pw, sandboxtest.BusyboxPath)) }()
	if err := d.ImportImage(ctx, pr, src); err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	// Only the tag the test pushed goes again; the image keeps its own.
	tagsLeft := func(t *testing.T, target string) {
		t.Helper()
		if ok, err := d.ImageExists(ctx, target); err != nil || ok {
			t.Errorf("the tag %s is still on the engine after the push (err %v)", target, err)
		}
		if ok, err := d.ImageExists(ctx, src); err != nil || !ok {
			t.Errorf("the pushed image %s is gone from the engine (err %v)", src, err)
		}
	}

	t.Run("pushed", func(t *testing.T) {
		srv := httptest.NewServer(reg)
		t.Cleanup(srv.Close)
		host := strings.TrimPrefix(srv.URL, "http://")
		target := host + "/team/airlock-test-push:1"
		var progress bytes.Buffer
		digest, err := d.PushImage(ctx, sandbox.PushRequest{Source: src, Target: target, Progress: &progress})
		if err != nil {
			t.Fatalf("PushImage: %v\n%s", err, progress.String())
		}
		if !strings.HasPrefix(digest, "sha256:") {
			t.Errorf("digest = %q, want the registry's sha256", digest)
		}
		res, err := http.Head(srv.URL + "/v2/team/airlock-test-push/manifests/1")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("Docker-Content-Digest") != digest {
			t.Errorf("registry has the manifest: %s, digest %q; want 200 and %q", res.Status, res.Header.Get("Docker-Content-Digest"), digest)
		}
		// Progress is one line per layer, not the engine's JSON or ticks.
		if p := progress.String(); !strings.Contains(p, ": Pushed") || strings.Contains(p, "{") || strings.Contains(p, "Pushing") {
			t.Errorf("progress:\n%s", p)
		}
		tagsLeft(t, target)
	})

	t.Run("refused", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				// A hostile registry's message tries to drive the terminal.
				io.WriteString(w, `{"errors":[{"code":"DENIED","message":"pushes are refused here\u001b]0;pwned\u0007\u001b[2J"}]}`)
				return
			}
			reg.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		target := strings.TrimPrefix(srv.URL, "http://") + "/team/airlock-test-push:1"
		_, err := d.PushImage(ctx, sandbox.PushRequest{Source: src, Target: target})
		if err == nil || !strings.Contains(err.Error(), "push "+target) || !strings.Contains(err.Error(), "pushes are refused here") {
			t.Fatalf("PushImage to a registry that refuses it: err = %v, want the target and the registry's denial", err)
		}
		if strings.ContainsAny(err.Error(), "\x1b\x07") {
			t.Errorf("the registry's terminal controls reach the error: %q", err)
		}
		tagsLeft(t, target)
	})

	t.Run("login", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "pusher" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"log in first"}]}`)
				return
			}
			reg.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		target := strings.TrimPrefix(srv.URL, "http://") + "/private/airlock-test-push:1"
		if _, err := d.PushImage(ctx, sandbox.PushRequest{Source: src, Target: target}); err == nil {
			t.Fatal("an anonymous push to a registry that wants a login succeeded")
		}
		auth := sandbox.RegistryAuth{Username: "pusher", Password: "s3cret"}
		if _, err := d.PushImage(ctx, sandbox.PushRequest{Source: src, Target: target, Auth: auth}); err != nil {
			t.Fatalf("PushImage with the registry's login: %v", err)
		}
		tagsLeft(t, target)
	})
}

// Podman takes no registry as plain HTTP unless registries.conf says so
// (Docker takes 127.0.0.0/8): one error that says what to do, and the
// tag it made is gone again.
func TestPodmanPushPlainHTTP(t *testing.T) {
	p := testkit.Podman(t)
	ctx := context.Background()
	src := "airlock-test-push:podman"
	t.Cleanup(func() { p.RemoveImage(context.Background(), src) })
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sandboxtest.BusyboxRootfs(pw, sandboxtest.BusyboxPath)) }()
	if err := p.ImportImage(ctx, pr, src); err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	target := host + "/team/airlock-test-push:podman"
	_, err := p.PushImage(ctx, sandbox.PushRequest{Source: src, Target: target})
	if err == nil || !strings.Contains(err.Error(), "push "+target) || !strings.Contains(err.Error(), `location = "`+host+`", insecure = true`) {
		t.Fatalf("PushImage to a plain-HTTP registry on Podman: err = %v, want the target and the registries.conf hint", err)
	}
	if ok, err := p.ImageExists(ctx, target); err != nil || ok {
		t.Errorf("the tag %s is still on Podman after the failed push (err %v)", target, err)
	}
}
