package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// The push's credentials are the user's docker login for that registry,
// and only for that one; none is an anonymous push, said so.
func TestRegistryAuth(t *testing.T) {
	dir := t.TempDir()
	// "auth" is base64("pusher:s3cret"), as docker login writes it.
	config := `{"auths": {"registry.test:5000": {"auth": "cHVzaGVyOnMzY3JldA=="}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("DOCKER_CONFIG", dir)
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(dir, "none.json"))
	t.Setenv("XDG_RUNTIME_DIR", dir)
	tests := []struct {
		target  string
		want    sandbox.RegistryAuth
		wantWho string
	}{
		{"registry.test:5000/team/airlock-claude:1", sandbox.RegistryAuth{Username: "pusher", Password: "s3cret"}, "with your login for registry.test:5000 as pusher"},
		{"other.test/team/airlock-claude:1", sandbox.RegistryAuth{}, "anonymously: no docker or podman login for other.test"},
	}
	for _, tt := range tests {
		auth, who, err := registryAuth(tt.target)
		if err != nil {
			t.Fatalf("registryAuth(%s): %v", tt.target, err)
		}
		if auth != tt.want || who != tt.wantWho {
			t.Errorf("registryAuth(%s) = %+v, %q; want %+v, %q", tt.target, auth, who, tt.want, tt.wantWho)
		}
		if strings.Contains(who, "s3cret") {
			t.Errorf("the description shows the password: %q", who)
		}
	}
}
