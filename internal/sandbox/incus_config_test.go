package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The instance configuration behind the hardening the engine suite sees
// from inside: unprivileged, isolated ids, no guest API, no NIC, no
// profile, nesting only when asked for.
func TestIncusInstanceConfig(t *testing.T) {
	probe, err := NewIncus("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := probe.Ping(ctx); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs Incus: %v", err)
		}
		t.Skipf("no Incus: %v", err)
	}
	// Created, never started: the proxy's empty image serves.
	if err := probe.ensureProxyImage(ctx); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "airlock")
	build := exec.Command("go", "build", "-o", bin, "github.com/airlock-dev/airlock/cmd/airlock")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, nesting := range []bool{false, true} {
		inc, _ := NewIncusWith("", IncusOptions{Nesting: nesting})
		inc.UseBinary(bin)
		name := "airlock-incus-config-test"
		inc.Remove(ctx, name)
		if _, err := inc.Create(ctx, Spec{Name: name, Image: IncusProxyImage, Cmd: []string{"true"}, User: "1000:1000",
			Mounts: []Mount{{Source: t.TempDir(), Target: "/data"}}}); err != nil {
			t.Fatal(err)
		}
		var inst struct {
			Profiles []string                     `json:"profiles"`
			Config   map[string]string            `json:"config"`
			Devices  map[string]map[string]string `json:"expanded_devices"`
		}
		err := inc.c.get(ctx, instancePath(name), &inst)
		inc.Remove(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"security.privileged": "false", "security.idmap.isolated": "true", "security.guestapi": "false",
			"security.nesting": map[bool]string{false: "false", true: "true"}[nesting],
		}
		for k, v := range want {
			if inst.Config[k] != v {
				t.Errorf("nesting %v: %s = %q, want %q", nesting, k, inst.Config[k], v)
			}
		}
		if want := map[bool]string{true: "uid 1000 1000\ngid 1000 1000"}[nesting]; inst.Config["raw.idmap"] != want {
			t.Errorf("nesting %v: raw.idmap %q, want %q", nesting, inst.Config["raw.idmap"], want)
		}
		if len(inst.Profiles) != 0 {
			t.Errorf("profiles %v, want none", inst.Profiles)
		}
		for n, d := range inst.Devices {
			if d["type"] == "nic" {
				t.Errorf("device %s is a NIC: %v", n, d)
			}
			// Shifted mounts only without nesting: a nesting agent is root
			// in its instance, and root's files on a shifted mount are the
			// host's root's.
			if d["type"] == "disk" && d["path"] != "/" && d["shift"] != strconv.FormatBool(!nesting) {
				t.Errorf("nesting %v: disk %s has shift %q: %v", nesting, n, d["shift"], d)
			}
		}
		if inst.Devices["root"]["pool"] != IncusDefaultPool || inst.Devices["airlock"]["readonly"] != "true" {
			t.Errorf("devices %v: want the root on %s and the binary read-only", inst.Devices, IncusDefaultPool)
		}
	}
}
