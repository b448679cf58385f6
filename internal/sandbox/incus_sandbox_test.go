package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
)

// TestIncusSandbox makes a real sandbox on Incus: the proxy instance on the
// bridge, the agent instance without a network, the relay between them. The
// agent reaches a server on the host only through its proxy.
func TestIncusSandbox(t *testing.T) {
	inc := incusEngine(t)
	ctx := context.Background()
	host, err := inc.HostAddress(ctx)
	if err != nil {
		t.Fatalf("HostAddress: %v", err)
	}
	// A server on the host's bridge address, for the proxy to reach.
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the host\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	id := "airlock-incus-sb-" + fmt.Sprint(time.Now().UnixNano()%1e8)
	spec, writeConfig := incusSandboxSpec(t, id, id+"-proxy", host, "http://"+ln.Addr().String(),
		`cat /proc/net/dev | grep -c : ; http_proxy=http://`+sandbox.AgentProxyAddr+` busybox wget -q -O- http://`+ln.Addr().String()+`/x; busybox wget -q -O- http://`+sandbox.AgentAPIAddr+`/healthz && echo healthy`)
	t.Cleanup(func() {
		inc.Remove(context.Background(), spec.Agent.Name)
		inc.RemoveProxy(context.Background(), spec.Proxy.Name)
	})
	start := time.Now()
	sb, err := inc.CreateSandbox(ctx, spec)
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	t.Logf("CreateSandbox took %s", time.Since(start))
	code, err := inc.Wait(ctx, sb.Agent)
	var out bytes.Buffer
	inc.Logs(ctx, sb.Agent, &out)
	if err != nil || code != 0 {
		t.Fatalf("agent: exit %d, %v; output:\n%s", code, err, out.String())
	}
	for _, want := range []string{"hello from the host\n", "healthy\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("agent output lacks %q:\n%s", want, out.String())
		}
	}
	if lines := strings.SplitN(out.String(), "\n", 2); lines[0] != "1" {
		t.Errorf("the agent sees %s interfaces in /proc/net/dev, want 1 (lo):\n%s", lines[0], out.String())
	}

	// Its proxy goes; the agent's instance stays, and comes back with a new
	// proxy.
	if err := inc.RemoveProxy(ctx, spec.Proxy.Name); err != nil {
		t.Fatalf("RemoveProxy: %v", err)
	}
	if _, err := inc.Inspect(ctx, spec.Proxy.Name); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("proxy after RemoveProxy: %v, want not found", err)
	}
	writeConfig()
	if _, err := inc.RestartSandbox(ctx, spec); err != nil {
		t.Fatalf("RestartSandbox: %v", err)
	}
	if code, err := inc.Wait(ctx, sb.Agent); err != nil || code != 0 {
		out.Reset()
		inc.Logs(ctx, sb.Agent, &out)
		t.Fatalf("restarted agent: exit %d, %v; output:\n%s", code, err, out.String())
	}

	// A sandbox whose agent cannot be made leaves nothing behind.
	bad := spec
	bad.Agent.Name, bad.Proxy.Name = id+"-bad", id+"-bad-proxy"
	bad.Agent.Image = "airlock-test-absent:0"
	if _, err := inc.CreateSandbox(ctx, bad); err == nil {
		t.Fatal("CreateSandbox with a missing image succeeded")
	}
	for _, name := range []string{bad.Agent.Name, bad.Proxy.Name} {
		if _, err := inc.Inspect(ctx, name); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("a failed CreateSandbox left %s: %v", name, err)
		}
	}
}

// incusSandboxSpec is a sandbox whose agent runs script, and a function
// that writes its proxy's configuration again (the proxy deletes its
// secrets once read, so each start needs them).
func incusSandboxSpec(t *testing.T, agent, proxy, host, api, script string) (sandbox.SandboxSpec, func()) {
	t.Helper()
	const uid, gid = 4242, 4343
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	egDir := filepath.Join(dir, "egress")
	os.Mkdir(egDir, 0o700)
	cfg := egress.SidecarConfig{
		Mode: "open", AllowCIDRs: []string{host + "/32"},
		ProxySocket: sandbox.ProxySocket, APISocket: sandbox.APISocket,
		AuditLog: sandbox.ProxyConfigDir + "/audit.jsonl", APIUpstream: api,
		SecretsFile: sandbox.ProxyConfigDir + "/secrets.json",
	}
	writeConfig := func() {
		for name, v := range map[string]any{"config.json": cfg, "secrets.json": egress.SidecarSecrets{}} {
			data, _ := json.Marshal(v)
			p := filepath.Join(egDir, name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(p, uid, gid)
		}
	}
	writeConfig()
	os.Chown(egDir, uid, gid)
	return sandbox.SandboxSpec{
		Agent: sandbox.Spec{
			Name: agent, Image: sandboxtest.Image, User: fmt.Sprintf("%d:%d", uid, gid),
			Cmd: []string{"sh", "-c", script},
		},
		Proxy: sandbox.ProxySpec{
			Name: proxy, User: fmt.Sprintf("%d:%d", uid, gid), ConfigDir: egDir,
			Env: []string{"HOME=/tmp"}, Labels: map[string]string{"airlock.role": "proxy"},
		},
		Binary: staticAirlock(t),
		Dir:    dir,
	}, writeConfig
}

// TestIncusProxyAddressRace makes sandboxes at once whose proxies all start
// looking for a free address at the same place, so that they pick the same
// one before any is created. Incus refuses all but one at start; each of the
// others picks another address, and every sandbox comes up.
func TestIncusProxyAddressRace(t *testing.T) {
	inc := incusEngine(t)
	ctx := context.Background()
	host, err := inc.HostAddress(ctx)
	if err != nil {
		t.Fatalf("HostAddress: %v", err)
	}
	out, err := exec.Command("incus", "network", "get", sandbox.IncusDefaultNetwork, "ipv4.address").Output()
	if err != nil {
		t.Fatalf("incus network get: %v", err)
	}
	pfx, err := netip.ParsePrefix(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	// Proxy names whose hash gives the same starting place (as proxyNIC
	// computes it).
	size := uint32(1)<<min(32-pfx.Bits(), 16) - 2
	startOf := func(name string) uint32 {
		h := fnv.New32a()
		h.Write([]byte(name))
		return h.Sum32() % size
	}
	base := fmt.Sprint(time.Now().UnixNano() % 1e8)
	var names []string
	want := startOf("airlock-race-" + base + "-0-proxy")
	for k := 0; len(names) < 4; k++ {
		if n := fmt.Sprintf("airlock-race-%s-%d", base, k); startOf(n+"-proxy") == want {
			names = append(names, n)
		}
	}
	errs := make(chan error, len(names))
	for _, n := range names {
		spec, _ := incusSandboxSpec(t, n, n+"-proxy", host, "http://"+host+":9", "true")
		t.Cleanup(func() {
			inc.Remove(context.Background(), spec.Agent.Name)
			inc.RemoveProxy(context.Background(), spec.Proxy.Name)
		})
		go func() {
			sb, err := inc.CreateSandbox(ctx, spec)
			if err == nil {
				_, err = inc.Wait(ctx, sb.Agent)
			}
			errs <- err
		}()
	}
	for range names {
		if err := <-errs; err != nil {
			t.Errorf("CreateSandbox: %v", err)
		}
	}
}
