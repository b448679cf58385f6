package run

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// The egress topology: the agent's container has no network but loopback.
// A sidecar proxy (this binary, `airlock proxy serve`, mounted read-only
// into a minimal image) sits on the egress network and listens on Unix
// sockets in a directory shared with the agent's container, where a relay
// (`airlock relay`, the same binary) turns them into 127.0.0.1 ports.
const (
	// DefaultEgressNetwork is airlock's own bridge network with outbound NAT.
	DefaultEgressNetwork = "airlock-egress"
	// ProxyImage is the sidecar's image: an empty root file system, since
	// the static airlock binary is all the proxy needs.
	ProxyImage = "airlock-proxy:1"

	containerBin    = "/airlock/bin/airlock"
	containerSock   = "/airlock/sock"
	containerEgress = "/airlock/egress"
	proxySocket     = "proxy.sock"
	apiSocket       = "api.sock"
	relayProxyAddr  = "127.0.0.1:3128"
	relayAPIAddr    = "127.0.0.1:3129"
	auditLogName    = "egress.jsonl"

	// DefaultAPIUpstream is where model traffic goes without a gateway.
	DefaultAPIUpstream = "https://api.anthropic.com"
)

// Egress is a run's resolved egress policy and the credentials its proxy
// injects.
type Egress struct {
	Mode       string
	Allow      []string
	Deny       []string
	AllowCIDRs []string
	Network    string   // the engine network the proxy sits on
	ExtraHosts []string // "name:address" pinned in the proxy's /etc/hosts
	// APIUpstream is the model API or gateway the agent's API endpoint
	// forwards to.
	APIUpstream string
	Auth        agent.APIAuth
	// CACerts are PEM certificates the proxy trusts for upstream TLS.
	CACerts []byte
}

// ProxyContainerName is a run's sidecar proxy.
func ProxyContainerName(id string) string { return ContainerName(id) + "-proxy" }

// AuditLogPath is the run's egress log on the host.
func (m *Manager) AuditLogPath(r *store.Run) string {
	return filepath.Join(m.Store.RunDir(r.ID), "egress", auditLogName)
}

// MeterPath is the run's proxy meter on the host (egress.ReadMeter reads
// it): cost, tokens and model requests as the proxy counted them, and why
// it refuses, if it does. Only the proxy writes it; the agent's container
// does not mount the directory.
func (m *Manager) MeterPath(r *store.Run) string {
	return filepath.Join(m.Store.RunDir(r.ID), "egress", egress.MeterFileName)
}

// startProxy starts the run's sidecar proxy and waits until it answers.
// The credentials go to the proxy in a file only it mounts, which is deleted
// as soon as the proxy has read it.
func (m *Manager) startProxy(ctx context.Context, r *store.Run, eg Egress, uid, gid int) error {
	bin, err := staticSelf()
	if err != nil {
		return err
	}
	network := eg.Network
	if network == "" {
		network = DefaultEgressNetwork
		if err := withNetLock(ctx, func() error {
			return m.Engine.EnsureNetwork(ctx, network, map[string]string{LabelRole: "egress"})
		}); err != nil {
			return err
		}
	}
	if err := m.ensureProxyImage(ctx); err != nil {
		return err
	}
	dir := m.Store.RunDir(r.ID)
	sockDir, egDir := filepath.Join(dir, "sock"), filepath.Join(dir, "egress")
	for _, d := range []string{sockDir, egDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("prepare egress for run %s: %w", r.ID, err)
		}
		if err := os.Lchown(d, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("prepare egress for run %s: %w", r.ID, err)
		}
	}
	upstream := eg.APIUpstream
	if upstream == "" {
		upstream = DefaultAPIUpstream
	}
	// The proxy counts every model request, side requests included, which
	// an interactive Claude Code makes (titles, summaries) and a headless
	// one does not; a person at the wheel is not cut off by that count.
	maxTurns := r.MaxTurns
	if r.Kind == KindShell {
		maxTurns = 0
	}
	cfg := egress.SidecarConfig{
		Mode:        eg.Mode,
		Allow:       eg.Allow,
		Deny:        eg.Deny,
		AllowCIDRs:  eg.AllowCIDRs,
		ProxySocket: containerSock + "/" + proxySocket,
		APISocket:   containerSock + "/" + apiSocket,
		AuditLog:    containerEgress + "/" + auditLogName,
		APIUpstream: upstream,
		APIRoutes:   egress.DefaultAPIRoutes(r.Agent),
		SecretsFile: containerEgress + "/secrets.json",
		MeterFile:   containerEgress + "/" + egress.MeterFileName,
		MaxCostUSD:  r.MaxCostUSD,
		MaxTurns:    maxTurns,
		Deadline:    r.Deadline,
		Timeout:     r.Timeout,
	}
	secrets := egress.SidecarSecrets{APIHeaders: eg.Auth.Headers}
	if eg.Auth.Secret != "" {
		secrets.Held = []string{eg.Auth.Secret}
	}
	files := []struct {
		name string
		v    any
		data []byte
	}{
		{name: "config.json", v: cfg},
		{name: "secrets.json", v: secrets},
		{name: "ca.pem", data: eg.CACerts},
	}
	for _, f := range files {
		data := f.data
		if f.v != nil {
			if data, err = json.Marshal(f.v); err != nil {
				return err
			}
		}
		path := filepath.Join(egDir, f.name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("prepare egress for run %s: %w", r.ID, err)
		}
		if err := os.Lchown(path, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("prepare egress for run %s: %w", r.ID, err)
		}
	}
	// However the start ends, the secrets file must not outlive it.
	defer os.Remove(filepath.Join(egDir, "secrets.json"))

	name := ProxyContainerName(r.ID)
	var id string
	err = withNetLock(ctx, func() error {
		var err error
		id, err = m.Engine.Create(ctx, sandbox.Spec{
			Name:  name,
			Image: ProxyImage,
			Cmd:   []string{containerBin, "proxy", "serve", "--config", containerEgress + "/config.json"},
			Env:   []string{"SSL_CERT_FILE=" + containerEgress + "/ca.pem", "HOME=/tmp"},
			User:  fmt.Sprintf("%d:%d", uid, gid),
			Mounts: []sandbox.Mount{
				{Source: bin, Target: containerBin, ReadOnly: true},
				{Source: sockDir, Target: containerSock},
				{Source: egDir, Target: containerEgress},
			},
			Tmpfs:      map[string]string{"/tmp": "rw,nosuid,size=64m"},
			Labels:     m.labels(r, "proxy"),
			Network:    network,
			ExtraHosts: eg.ExtraHosts,
			Limits:     sandbox.Limits{MemoryBytes: 512 << 20, Pids: 512, CPUs: 1},
		})
		if err != nil {
			return fmt.Errorf("create the egress proxy for run %s: %w", r.ID, err)
		}
		if err := m.Engine.Start(ctx, id); err != nil {
			return fmt.Errorf("start the egress proxy for run %s: %w", r.ID, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := m.waitProxy(ctx, id, filepath.Join(sockDir, apiSocket)); err != nil {
		return fmt.Errorf("egress proxy of run %s: %w", r.ID, err)
	}
	return nil
}

// waitProxy polls the proxy's health endpoint until it answers, or the
// proxy exits (then its output says why).
func (m *Manager) waitProxy(ctx context.Context, id, socket string) error {
	// A Unix socket's path is limited to 107 bytes, and a run directory
	// under a long home or temporary directory exceeds it; through an open
	// descriptor of the directory any path is short.
	dir, err := os.Open(filepath.Dir(socket))
	if err != nil {
		return err
	}
	defer dir.Close()
	short := fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(socket))
	hc := &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", short)
		}},
		Timeout: time.Second,
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get("http://proxy/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if st, ierr := m.Engine.Inspect(ctx, id); ierr == nil && st.Status == sandbox.StatusExited {
			var out bytes.Buffer
			m.Engine.Logs(ctx, id, &out)
			return fmt.Errorf("it exited with status %d: %s", st.ExitCode, bytes.TrimSpace(out.Bytes()))
		}
		if time.Now().After(deadline) {
			return errors.New("it did not become healthy within 20s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// agentEgress wires the agent's container to the proxy: no network, the
// relay in front of the agent's command, proxy variables, and placeholder
// credentials.
func agentEgress(spec *sandbox.Spec, r *store.Run, dir, bin string, eg Egress, relayFlags []string) {
	spec.Network = "none"
	spec.Mounts = append(spec.Mounts,
		sandbox.Mount{Source: bin, Target: containerBin, ReadOnly: true},
		sandbox.Mount{Source: filepath.Join(dir, "sock"), Target: containerSock},
	)
	relay := []string{containerBin, "relay",
		"--listen", relayProxyAddr + "=" + containerSock + "/" + proxySocket,
		"--listen", relayAPIAddr + "=" + containerSock + "/" + apiSocket}
	relay = append(append(relay, relayFlags...), "--")
	spec.Cmd = append(relay, spec.Cmd...)
	proxyURL := "http://" + relayProxyAddr
	spec.Env = append(spec.Env,
		"HTTP_PROXY="+proxyURL, "HTTPS_PROXY="+proxyURL, "http_proxy="+proxyURL, "https_proxy="+proxyURL,
		"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1",
		"ANTHROPIC_BASE_URL=http://"+relayAPIAddr,
	)
	spec.Env = append(spec.Env, eg.Auth.Env...)
}

// stopProxy removes a run's sidecar; a missing one is fine.
func (m *Manager) stopProxy(ctx context.Context, id string) error {
	return m.removeNetworked(ctx, ProxyContainerName(id))
}

// egressCounts counts the allowed and denied decisions in a run's log.
func (m *Manager) egressCounts(r *store.Run) (allowed, denied int) {
	f, err := os.Open(m.AuditLogPath(r))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	recs, _ := egress.ReadRecords(f)
	for _, rec := range recs {
		if rec.Allowed {
			allowed++
		} else {
			denied++
		}
	}
	return allowed, denied
}

// imageImporter is what making the proxy image needs from the engine.
type imageImporter interface {
	ImportImage(ctx context.Context, r io.Reader, ref string) error
}

// ensureProxyImage imports the sidecar's empty image once.
func (m *Manager) ensureProxyImage(ctx context.Context) error {
	if ok, err := m.Engine.ImageExists(ctx, ProxyImage); err != nil {
		return err
	} else if ok {
		return nil
	}
	imp, ok := m.Engine.(imageImporter)
	if !ok {
		return fmt.Errorf("image %s is missing and this engine cannot import it", ProxyImage)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"tmp/", 0o1777}, {"airlock/", 0o755}, {"airlock/bin/", 0o755}, {"airlock/sock/", 0o755}, {"airlock/egress/", 0o755}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := imp.ImportImage(ctx, &buf, ProxyImage); err != nil {
		return fmt.Errorf("make the proxy image: %w", err)
	}
	return nil
}

// staticSelf is the path of this airlock binary, which the sandbox and the
// proxy run. It must be statically linked: the proxy's image has no libc.
func staticSelf() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the airlock binary: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return "", fmt.Errorf("find the airlock binary: %w", err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		return "", fmt.Errorf("read the airlock binary %s: %w", exe, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked, but the egress proxy and relay run it inside containers: rebuild it with CGO_ENABLED=0 (make build does)", exe)
		}
	}
	return exe, nil
}

func egressSummary(eg Egress) string {
	mode := eg.Mode
	if mode == "" {
		mode = "allowlist"
	}
	if mode != "allowlist" {
		return mode
	}
	return fmt.Sprintf("allowlist, %d allowed, %d denied patterns", len(eg.Allow), len(eg.Deny))
}
