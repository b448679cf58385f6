package sandbox

import (
	"os"
	"strings"
	"testing"
)

func TestCheckUser(t *testing.T) {
	tests := []struct {
		user    string
		wantErr string // "" means accepted
	}{
		{"1000:1000", ""},
		{"4242:4343", ""},
		{"", "no user given"},
		{"1000", "has no group"},    // the engine would pick gid 0
		{"1000:0", "gid 0 is root"}, // root's group still opens root-group files
		{"0:1000", "uid 0 is root"},
		{"agent:agent", "not a number"}, // names mean whatever the image says
		{"1000:1000:1", "not a number"},
		{"-1:1000", "not a number"},
	}
	for _, tc := range tests {
		err := checkUser(tc.user)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("checkUser(%q) = %v, want accepted", tc.user, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("checkUser(%q) = %v, want error containing %q", tc.user, err, tc.wantErr)
		}
	}
}

func TestCheckNotEngineSocket(t *testing.T) {
	dir := t.TempDir()
	d := &Docker{engineSockets: []string{dir + "/engine/api.sock", dir + "/podman"}}
	mkdirAll(t, dir+"/engine", dir+"/podman/sub", dir+"/work")
	writeFile(t, dir+"/engine/api.sock")

	for src, refused := range map[string]bool{
		dir + "/engine/api.sock":     true,  // the socket
		dir + "/engine":              true,  // its directory
		dir:                          true,  // an ancestor
		dir + "/podman/sub":          true,  // inside an engine directory
		dir + "/work":                false, // a sibling
		dir + "/x/docker.sock":       true,  // named like a socket, wherever it is
		dir + "/x/podman-runsc.sock": true,  // a Podman service for another runtime
		dir + "/x/podman-notes.txt":  false,
	} {
		err := d.checkNotEngineSocket(src)
		if refused != (err != nil) {
			t.Errorf("checkNotEngineSocket(%s) = %v, want refused=%v", src, err, refused)
		}
	}
}

func mkdirAll(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPodmanRuntimeHost(t *testing.T) {
	tests := []struct{ host, name, want string }{
		{"unix:///run/podman/podman.sock", "runsc", "unix:///run/podman/podman-runsc.sock"},
		{"unix:///run/user/1000/podman/podman.sock", "runsc", "unix:///run/user/1000/podman/podman-runsc.sock"},
		{"unix:///tmp/my.sock", "kata", "unix:///tmp/podman-kata.sock"},
		{"tcp://127.0.0.1:8080", "runsc", ""},
		{"unix:///run/podman/podman.sock", "../x", ""},
		{"unix:///run/podman/podman.sock", "", ""},
	}
	for _, tt := range tests {
		if got := PodmanRuntimeHost(tt.host, tt.name); got != tt.want {
			t.Errorf("PodmanRuntimeHost(%q, %q) = %q, want %q", tt.host, tt.name, got, tt.want)
		}
	}
}

func TestCreateOptionsRuntime(t *testing.T) {
	d := &Docker{}
	for _, rt := range []string{"", "runsc"} {
		opts, err := d.createOptions(Spec{Image: "x", User: "1000:1000", Runtime: rt})
		if err != nil {
			t.Fatal(err)
		}
		if opts.HostConfig.Runtime != rt {
			t.Errorf("Runtime %q: the create request asks for %q", rt, opts.HostConfig.Runtime)
		}
	}
}
