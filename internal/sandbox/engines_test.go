package sandbox

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

func TestChoose(t *testing.T) {
	detected := []Endpoint{
		{Kind: KindDocker, Host: "unix:///d.sock", Why: "DOCKER_HOST is set"},
		{Kind: KindPodman, Host: "unix:///p.sock", Why: "the Podman socket is there"},
	}
	tests := []struct {
		name, kind string
		detected   []Endpoint
		want       Endpoint
		errHas     string
	}{
		{"auto takes the first", "", detected, Endpoint{Kind: KindDocker, Host: "unix:///d.sock"}, ""},
		{"a kind takes its own", KindPodman, detected, Endpoint{Kind: KindPodman, Host: "unix:///p.sock"}, ""},
		{"nothing detected: Docker's default", "", nil, Endpoint{Kind: KindDocker}, ""},
		{"a kind not detected: its default", KindIncus, detected, Endpoint{Kind: KindIncus}, ""},
		{"unknown kind", "lxd", detected, Endpoint{}, `unknown engine "lxd"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Choose(tt.kind, tt.detected)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Choose = %v, %v; want an error with %q", got, err, tt.errHas)
				}
				return
			}
			if err != nil || got.Kind != tt.want.Kind || got.Host != tt.want.Host || got.Why == "" {
				t.Fatalf("Choose = %+v, %v; want %+v with a reason", got, err, tt.want)
			}
		})
	}
}

// Detection looks for sockets in the order the documentation gives, and
// only for sockets.
func TestDetect(t *testing.T) {
	rt := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rt, "podman"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(rt, "podman", "podman.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	plain := filepath.Join(rt, "incus.socket")
	os.WriteFile(plain, nil, 0o600) // a regular file, not a socket
	env := map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:1", "XDG_RUNTIME_DIR": rt, "INCUS_SOCKET": plain}
	eps := Detect(func(k string) string { return env[k] })
	if len(eps) < 2 || eps[0].Host != "tcp://127.0.0.1:1" || eps[0].Kind != KindDocker {
		t.Fatalf("Detect = %+v; want DOCKER_HOST first", eps)
	}
	var podman, incus bool
	for _, ep := range eps {
		podman = podman || ep.Host == "unix://"+filepath.Join(rt, "podman", "podman.sock") && ep.Kind == KindPodman
		incus = incus || ep.Host == "unix://"+plain
	}
	if !podman || incus {
		t.Errorf("Detect = %+v; want the rootless Podman socket, and not a file that is no socket", eps)
	}
}

func TestOpen(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kubeconfig")
	if _, err := Open(Endpoint{Kind: KindKubernetes, Kubernetes: KubernetesOptions{Kubeconfig: missing}}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Open(kubernetes) with a missing kubeconfig = %v, want an error naming it", err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: ns1}}]\ncurrent-context: x\n"), 0o600)
	if k, err := Open(Endpoint{Kind: KindKubernetes, Kubernetes: KubernetesOptions{Kubeconfig: kc}}); err != nil || k.Kind() != KindKubernetes || CapsOf(k).Exec == nil || k.(*Kubernetes).Namespace() != "ns1" {
		t.Errorf("Open(kubernetes) = %v, %v; want the Kubernetes engine in the context's namespace, which execs", k, err)
	} else if err := k.Ping(context.Background()); !errors.Is(err, ErrEngineUnreachable) {
		t.Errorf("Ping of a cluster that is not there = %v, want ErrEngineUnreachable", err)
	}
	if i, err := Open(Endpoint{Kind: KindIncus, Host: "unix:///nonexistent.sock"}); err != nil || i.Kind() != KindIncus || CapsOf(i).Import == nil {
		t.Errorf("Open(incus) = %v, %v; want the Incus engine, which imports images", i, err)
	}
	e, err := Open(Endpoint{Kind: KindDocker, Host: "unix:///nonexistent.sock"})
	if err != nil || e.Kind() != KindDocker {
		t.Fatalf("Open(docker) = %v, %v", e, err)
	}
	c := CapsOf(e)
	if c.Exec == nil || c.Import == nil || c.Build == nil || c.Prune == nil || c.Host == nil {
		t.Errorf("Docker's capabilities = %+v, want them all", c)
	}
	if err := c.Missing("fly"); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "docker engine cannot fly") {
		t.Errorf("Missing = %v", err)
	}
	if p, err := Open(Endpoint{Kind: KindPodman, Host: "unix:///nonexistent.sock"}); err != nil || p.Kind() != KindPodman {
		t.Errorf("Open(podman) = %v, %v", p, err)
	}
}

func TestParseHostAddr(t *testing.T) {
	for in, ok := range map[string]bool{"a.test:192.0.2.1": true, "a.test:[2001:db8::1]": true, "a.test:2001:db8::1": true,
		"nocolon": false, ":1.2.3.4": false, "a:notanip": false} {
		if _, err := ParseHostAddr(in); (err == nil) != ok {
			t.Errorf("ParseHostAddr(%q) = %v, want ok=%v", in, err, ok)
		}
	}
}

func TestTmpfsOptions(t *testing.T) {
	got, err := tmpfsOptions([]Tmpfs{{Target: "/tmp", SizeBytes: 1 << 20, Exec: true}, {Target: "/x"}})
	if err != nil || got["/tmp"] != "rw,nosuid,nodev,exec,size=1048576" || got["/x"] != "rw,nosuid,nodev,noexec" {
		t.Errorf("tmpfsOptions = %v, %v", got, err)
	}
	if _, err := tmpfsOptions([]Tmpfs{{Target: "rel"}}); err == nil {
		t.Error("a relative tmpfs target was accepted")
	}
}

// Every engine state lands on one of airlock's, strictly.
func TestStatusOf(t *testing.T) {
	for in, want := range map[string]Status{
		"created": StatusCreated, "configured": StatusCreated, "initialized": StatusCreated,
		"running": StatusRunning, "restarting": StatusRunning, "stopping": StatusRunning,
		"paused": StatusPaused, "exited": StatusExited, "stopped": StatusExited,
		"dead": StatusDead, "removing": StatusDead, "": StatusUnknown, "weird": StatusUnknown,
	} {
		if got := statusOf(container.ContainerState(in)); got != want {
			t.Errorf("statusOf(%q) = %s, want %s", in, got, want)
		}
	}
}
