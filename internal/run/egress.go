package run

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// The egress topology is the engine's (sandbox.SandboxSpec): the agent's
// container has no network but loopback, and its proxy is the only way out.
// This package says what the proxy enforces, in files in the run's egress
// directory that only the proxy mounts.
const (
	auditLogName = "egress.jsonl"

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
	// Inject are the credentials the proxy adds for hosts it intercepts
	// (inject.go); their secrets are never recorded.
	Inject []Injection
	// Scan is how the proxy scans requests for credentials; nil is the
	// default (block, 256 KiB of bodies).
	Scan *egress.ScanConfig
	// SSH is SSH through the proxy (ssh.go).
	SSH SSHEgress
	// Cloud, with Auth.Cloud, is how the proxy authenticates to a cloud
	// model provider (Bedrock, Vertex).
	Cloud *CloudEgress `json:",omitempty"`
}

func (eg Egress) cloudSettings() *store.Cloud {
	if eg.Cloud == nil {
		return nil
	}
	s := eg.Cloud.Settings
	return &s
}

// CloudEgress is a cloud provider's credentials for the proxy: how it signs,
// the host's settings that find the credentials again (recorded with the
// run), and the credentials as fetched when the run starts (never
// recorded).
type CloudEgress struct {
	Auth        egress.CloudAuth
	Settings    store.Cloud
	Credentials egress.CloudCredentials `json:"-"`
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

// sandboxSpec writes the proxy's configuration for a run and returns the
// sandbox to create around agent. The credentials go to the proxy in a file
// only it mounts; the caller deletes it (removeSecrets) as soon as the
// sandbox has started or failed to.
func (m *Manager) sandboxSpec(r *store.Run, eg Egress, agentSpec sandbox.Spec, relayFlags []string, uid, gid int) (sandbox.SandboxSpec, error) {
	bin, err := m.self()
	if err != nil {
		return sandbox.SandboxSpec{}, err
	}
	hosts := make([]sandbox.HostAddr, 0, len(eg.ExtraHosts))
	for _, h := range eg.ExtraHosts {
		ha, err := sandbox.ParseHostAddr(h)
		if err != nil {
			return sandbox.SandboxSpec{}, err
		}
		hosts = append(hosts, ha)
	}
	dir := m.Store.RunDir(r.ID)
	egDir := filepath.Join(dir, "egress")
	if err := os.MkdirAll(egDir, 0o700); err != nil {
		return sandbox.SandboxSpec{}, fmt.Errorf("prepare egress for run %s: %w", r.ID, err)
	}
	if err := os.Lchown(egDir, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return sandbox.SandboxSpec{}, fmt.Errorf("prepare egress for run %s: %w", r.ID, err)
	}
	upstream := eg.APIUpstream
	if upstream == "" {
		upstream = eg.Auth.Upstream
	}
	if upstream == "" {
		upstream = DefaultAPIUpstream
	}
	var routes []egress.APIRoute
	for _, rt := range eg.Auth.Routes {
		route := egress.APIRoute{Method: rt.Method, Path: rt.Path, Metered: rt.Metered, NoTurn: rt.NoTurn}
		if eg.APIUpstream == "" {
			// A gateway takes every route; without one, a route may
			// go to another host of the provider.
			route.Upstream = rt.Upstream
		}
		routes = append(routes, route)
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
		ProxySocket: sandbox.ProxySocket,
		APISocket:   sandbox.APISocket,
		AuditLog:    sandbox.ProxyConfigDir + "/" + auditLogName,
		APIUpstream: upstream,
		APIRoutes:   routes,
		APIStrip:    eg.Auth.Strip,
		APIUsage:    eg.Auth.Usage,
		SecretsFile: sandbox.ProxyConfigDir + "/secrets.json",
		MeterFile:   sandbox.ProxyConfigDir + "/" + egress.MeterFileName,
		MaxCostUSD:  r.MaxCostUSD,
		MaxTurns:    maxTurns,
		Deadline:    r.Deadline,
		Timeout:     r.Timeout,
		Scan:        eg.Scan,
	}
	secrets := egress.SidecarSecrets{APIHeaders: eg.Auth.Headers}
	if eg.Auth.Secret != "" {
		secrets.Held = []string{eg.Auth.Secret}
	}
	if c := eg.Auth.Cloud; c != nil {
		// The provider's price table, for its region.
		cfg.APIProvider, cfg.APIRegion = c.Provider, c.Region
	}
	var handed []string
	if eg.Cloud != nil {
		auth, creds := eg.Cloud.Auth, eg.Cloud.Credentials
		cfg.APICloud = &auth
		cfg.CredentialsFile = sandbox.ProxyConfigDir + "/" + cloudCredentialsFile
		secrets.Cloud = &creds
		handed = []string{cloudCredentialsFile}
	}
	inj, err := m.planInjection(r, eg.Inject, uid, gid)
	if err != nil {
		return sandbox.SandboxSpec{}, err
	}
	secrets.Held = append(secrets.Held, inj.held...)
	secrets.Inject, secrets.CA = inj.proxy, inj.ca
	sshMounts, sshEnv, proxyMounts, err := sshSandbox(dir, eg.SSH, &cfg, &secrets)
	if err != nil {
		return sandbox.SandboxSpec{}, err
	}
	agentSpec.Mounts = append(agentSpec.Mounts, sshMounts...)
	agentSpec.Env = append(agentSpec.Env, sshEnv...)
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
				return sandbox.SandboxSpec{}, err
			}
		}
		path := filepath.Join(egDir, f.name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return sandbox.SandboxSpec{}, fmt.Errorf("prepare egress for run %s: %w", r.ID, err)
		}
		if err := os.Lchown(path, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
			return sandbox.SandboxSpec{}, fmt.Errorf("prepare egress for run %s: %w", r.ID, err)
		}
	}
	agentSpec.Env = append(append(agentSpec.Env, agentEnv(eg)...), inj.env...)
	agentSpec.Mounts = append(agentSpec.Mounts, inj.mounts...)
	relayFlags = append(relayFlags, inj.relayFlags...)
	return sandbox.SandboxSpec{
		Agent: agentSpec,
		Proxy: sandbox.ProxySpec{
			Name:       ProxyContainerName(r.ID),
			User:       fmt.Sprintf("%d:%d", uid, gid),
			ConfigDir:  egDir,
			Env:        []string{"SSL_CERT_FILE=" + sandbox.ProxyConfigDir + "/ca.pem", "HOME=/tmp"},
			Network:    eg.Network,
			ExtraHosts: hosts,
			Labels:     m.labels(r, "proxy"),
			Limits:     sandbox.Limits{MemoryBytes: 512 << 20, Pids: 512, CPUs: 1},
			Mounts:     proxyMounts,
			Handed:     handed,
		},
		Binary:     bin,
		Dir:        dir,
		RelayFlags: relayFlags,
	}, nil
}

// removeSecrets deletes the proxy's credentials file: the proxy has read it
// once started, and a failed start must not leave it either.
func (m *Manager) removeSecrets(r *store.Run) {
	os.Remove(filepath.Join(m.Store.RunDir(r.ID), "egress", "secrets.json"))
}

// agentEnv points the agent at its proxy, and gives it placeholder
// credentials.
func agentEnv(eg Egress) []string {
	proxyURL := "http://" + sandbox.AgentProxyAddr
	env := []string{
		"HTTP_PROXY=" + proxyURL, "HTTPS_PROXY=" + proxyURL, "http_proxy=" + proxyURL, "https_proxy=" + proxyURL,
		"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1",
	}
	return append(env, eg.Auth.Env...)
}

// stopProxy removes a run's sidecar; a missing one is fine. Refreshed
// cloud credentials it did not take up go with it.
func (m *Manager) stopProxy(ctx context.Context, id string) error {
	err := m.Engine.RemoveProxy(ctx, ProxyContainerName(id))
	m.removeCloudCredentials(id)
	return err
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

// meter is the proxy's account of the run's model traffic; zero when the
// proxy has metered nothing yet (or the file is not one the proxy wrote:
// egress.ReadMeter follows no link and never blocks).
func (m *Manager) meter(r *store.Run) egress.Meter {
	mt, _ := egress.ReadMeter(m.MeterPath(r))
	return mt
}
