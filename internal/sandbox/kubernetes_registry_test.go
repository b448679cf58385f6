package sandbox_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// RegistryHolds answers only what the registry said: held, or not; a
// registry that refuses this machine, or cannot be reached, is no answer.
func TestRegistryHolds(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials of the machine's
	t.Setenv("REGISTRY_AUTH_FILE", t.TempDir()+"/auth.json")
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	pushed := host + "/team/airlock-sandbox:abc"
	ref, err := name.ParseReference(pushed)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	refuses := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"errors":[{"code":"DENIED","message":"no"}]}`)
	}))
	defer refuses.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	ctx := context.Background()
	for _, tc := range []struct {
		name, ref string
		held      bool
		err       string
	}{
		{"pushed", pushed, true, ""},
		{"other tag", host + "/team/airlock-sandbox:def", false, ""},
		{"other repository", host + "/team/nothing:abc", false, ""},
		{"refused", strings.TrimPrefix(refuses.URL, "http://") + "/team/airlock-sandbox:abc", false, "ask registry"},
		{"unreachable", closed + "/team/airlock-sandbox:abc", false, "ask registry " + closed},
		{"bad reference", host + "/Team/x:abc", false, "image reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, err := sandbox.RegistryHolds(ctx, tc.ref)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("RegistryHolds(%s) = %v, %v; want an error with %q", tc.ref, held, err, tc.err)
				}
				return
			}
			if err != nil || held != tc.held {
				t.Fatalf("RegistryHolds(%s) = %v, %v; want %v", tc.ref, held, err, tc.held)
			}
		})
	}
}
