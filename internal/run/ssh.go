package run

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// SSHEgress is SSH from a run's sandbox to the hosts it may reach on
// port 22, through its proxy. Nothing in it is secret: a key file is read
// when the proxy is configured, into the secrets file only the proxy
// mounts.
type SSHEgress struct {
	// Enabled gives the sandbox an ssh configuration: every ssh goes
	// through the proxy (ProxyCommand `airlock connect`), and trusts only
	// KnownHosts.
	Enabled bool `json:"enabled,omitempty"`
	// KnownHosts are the host's known_hosts lines for the allowed hosts.
	KnownHosts string `json:"known_hosts,omitempty"`
	// Keys are the SHA256 fingerprints of the keys the sandbox's ssh-agent
	// lists and signs with; none: no agent.
	Keys []string `json:"keys,omitempty"`
	// AgentSocket is the user's ssh-agent on the host, which the proxy's
	// filter sits in front of, or "" for KeyFile.
	AgentSocket string `json:"agent_socket,omitempty"`
	// KeyFile is an unencrypted private key the proxy's own agent holds.
	KeyFile string `json:"key_file,omitempty"`
}

// Where the sandbox's ssh configuration is mounted. Debian's ssh_config
// includes ssh_config.d/*.conf first, and ssh_known_hosts is the global
// known_hosts file: neither is in the agent's home, where a resumed
// session's files are kept, and both are read-only.
const (
	sshConfigPath     = "/etc/ssh/ssh_config.d/airlock.conf"
	sshKnownHostsPath = "/etc/ssh/ssh_known_hosts"
)

// sshConfig is the sandbox's ssh configuration: every host through the
// proxy, whose policy decides; host keys only from the host's
// known_hosts, never learnt on the way.
func sshConfig(agent bool) string {
	c := `# Written by airlock: ssh reaches hosts only through the run's egress proxy.
Host *
    ProxyCommand ` + sandbox.BinaryPath + ` connect %h %p
    StrictHostKeyChecking yes
    UserKnownHostsFile /dev/null
    GlobalKnownHostsFile ` + sshKnownHostsPath + `
    CheckHostIP no
    UpdateHostKeys no
`
	if agent {
		c += "    IdentityAgent " + sandbox.SSHAgentSocket + "\n"
	}
	return c
}

// sshSandbox writes a run's ssh configuration and says what the agent's
// container mounts, its environment, what the proxy mounts, and fills in
// the proxy's agent configuration and secrets.
func sshSandbox(dir string, s SSHEgress, cfg *egress.SidecarConfig, secrets *egress.SidecarSecrets) (agentMounts []sandbox.Mount, env []string, proxyMounts []sandbox.Mount, err error) {
	if !s.Enabled {
		return nil, nil, nil, nil
	}
	sshDir := filepath.Join(dir, "ssh")
	if err := os.MkdirAll(sshDir, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("prepare ssh: %w", err)
	}
	files := map[string]string{"config": sshConfig(len(s.Keys) > 0), "known_hosts": s.KnownHosts}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(sshDir, name), []byte(content), 0o644); err != nil {
			return nil, nil, nil, fmt.Errorf("prepare ssh: %w", err)
		}
	}
	agentMounts = []sandbox.Mount{
		{Source: filepath.Join(sshDir, "config"), Target: sshConfigPath, ReadOnly: true},
		{Source: filepath.Join(sshDir, "known_hosts"), Target: sshKnownHostsPath, ReadOnly: true},
	}
	if len(s.Keys) == 0 {
		return agentMounts, nil, nil, nil
	}
	cfg.SSHAgent = &egress.SSHAgentConfig{Socket: sandbox.SSHAgentSocket, Keys: s.Keys}
	env = []string{"SSH_AUTH_SOCK=" + sandbox.SSHAgentSocket}
	switch {
	case s.KeyFile != "":
		_, pem, err := egress.LoadSSHKeyFile(s.KeyFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("egress.ssh.key_file: %w", err)
		}
		secrets.SSHKeys = []string{string(pem)}
	case s.AgentSocket != "":
		if fi, err := os.Stat(s.AgentSocket); err != nil || fi.Mode().Type() != os.ModeSocket {
			return nil, nil, nil, fmt.Errorf("your ssh-agent's socket %s is gone (SSH_AUTH_SOCK): start the run from a shell with an agent", s.AgentSocket)
		}
		cfg.SSHAgent.Upstream = sandbox.ProxySSHAgentUpstream
		proxyMounts = []sandbox.Mount{{Source: s.AgentSocket, Target: sandbox.ProxySSHAgentUpstream}}
	default:
		return nil, nil, nil, errors.New("ssh keys without an agent or a key file")
	}
	return agentMounts, env, proxyMounts, nil
}
