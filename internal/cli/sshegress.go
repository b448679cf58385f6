package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// sshEgress resolves SSH for a run: the hosts allowed on port 22 and their
// host keys from the host's known_hosts, and the keys the sandbox's
// ssh-agent may use, from the user's agent or a key file. Every problem is
// found here, before anything is created.
func (f *Factory) sshEgress(res *config.Resolved, policy egress.Policy) (run.SSHEgress, error) {
	out, err := f.sshEgressKeys(res, policy)
	if err != nil || len(out.Keys) == 0 {
		return out, err
	}
	return out, sshHostsCover(res, policy)
}

// sshHostsCover checks that the sandbox can sign in with the user's keys
// only where the user said: every host the policy allows on port 22 must
// be one of [egress.ssh] hosts, which only the user's config may set (the
// allowlist may come from the repository), and the policy must be an
// allowlist.
func sshHostsCover(res *config.Resolved, policy egress.Policy) error {
	hosts := res.Config.Egress.SSH.Hosts
	if policy.Mode != egress.ModeAllowlist {
		return fmt.Errorf("egress.ssh: the sandbox may sign in with your SSH keys, but egress.mode is %q (%s), which lets it reach any host on port 22: use the allowlist mode", policy.Mode, res.From("egress.mode"))
	}
	for _, r := range egress.SSHRules(policy) {
		if !sshHostCovered(r.Pattern, hosts) {
			return fmt.Errorf("%s is allowed on port 22 (egress.allow, %s), but not in [egress.ssh] hosts (%s): the sandbox signs in with your SSH keys wherever it reaches over SSH, so name each such host in hosts in your user config, or remove it from the allowlist",
				r.Pattern, res.From("egress.allow"), strings.Join(append([]string{}, hosts...), ", "))
		}
	}
	return nil
}

// sshHostCovered reports whether an allowlist pattern is within one of the
// user's host patterns: the same pattern, or under a *.domain one.
func sshHostCovered(pattern string, hosts []string) bool {
	for _, h := range hosts {
		if pattern == h {
			return true
		}
		if dom, ok := strings.CutPrefix(h, "*"); ok && strings.HasSuffix(strings.TrimPrefix(pattern, "*"), dom) {
			return true
		}
	}
	return false
}

// sshEgressKeys is the SSH set-up without the hosts check.
func (f *Factory) sshEgressKeys(res *config.Resolved, policy egress.Policy) (run.SSHEgress, error) {
	cfg := res.Config.Egress.SSH
	rules := egress.SSHRules(policy)
	agentWanted := len(cfg.Keys) > 0 || cfg.KeyFile != ""
	if len(rules) == 0 {
		if agentWanted && policy.Mode == egress.ModeAllowlist {
			key := "egress.ssh.keys"
			if len(cfg.Keys) == 0 {
				key = "egress.ssh.key_file"
			}
			return run.SSHEgress{}, fmt.Errorf("%s (%s): no host is allowed for SSH: allow one on port 22, such as --allow github.com:22 or [egress] allow = [\"github.com:22\"]", key, res.From(key))
		}
		if !agentWanted {
			return run.SSHEgress{}, nil
		}
	}
	out := run.SSHEgress{Enabled: true}
	kh, err := f.knownHosts(res, rules)
	if err != nil {
		return run.SSHEgress{}, err
	}
	out.KnownHosts = kh
	if !agentWanted {
		return out, nil
	}
	for _, k := range cfg.Keys {
		fp, err := egress.SSHKeyFingerprint(k)
		if err != nil {
			return run.SSHEgress{}, fmt.Errorf("egress.ssh.keys (%s): %w", res.From("egress.ssh.keys"), err)
		}
		out.Keys = append(out.Keys, fp)
	}
	if cfg.KeyFile != "" {
		fp, _, err := egress.LoadSSHKeyFile(cfg.KeyFile)
		if err != nil {
			return run.SSHEgress{}, fmt.Errorf("egress.ssh.key_file (%s): %w", res.From("egress.ssh.key_file"), err)
		}
		if len(out.Keys) > 0 && !slices.Contains(out.Keys, fp) {
			return run.SSHEgress{}, fmt.Errorf("egress.ssh.keys (%s) does not list the key in egress.ssh.key_file %s (%s, %s): list it, or leave keys empty to use the key file's", res.From("egress.ssh.keys"), cfg.KeyFile, fp, res.From("egress.ssh.key_file"))
		}
		out.Keys, out.KeyFile = []string{fp}, cfg.KeyFile
		return out, nil
	}
	// On Incus the proxy's uid is shifted into its instance's range, and
	// ssh-agent refuses a peer of another uid (the backend refuses too).
	if ep, err := f.chooseEngine(); err == nil && ep.Kind == sandbox.KindIncus {
		return run.SSHEgress{}, fmt.Errorf("egress.ssh.keys (%s): forwarding your ssh-agent is not supported on Incus (%s); load the key with [egress.ssh] key_file instead", res.From("egress.ssh.keys"), ep.Why)
	}
	sock, _ := f.LookupEnv("SSH_AUTH_SOCK")
	if sock == "" {
		return run.SSHEgress{}, fmt.Errorf("egress.ssh.keys (%s) needs your ssh-agent, but SSH_AUTH_SOCK is not set: start one (eval $(ssh-agent); ssh-add), or load an unencrypted key with [egress.ssh] key_file", res.From("egress.ssh.keys"))
	}
	if sock, err = filepath.Abs(sock); err != nil {
		return run.SSHEgress{}, err
	}
	// The proxy runs as the sandbox's user, and ssh-agent answers only
	// its own uid (and root).
	if fi, err := os.Stat(sock); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			proxyUID, _ := run.User(os.Getuid(), os.Getgid())
			if int(st.Uid) != proxyUID {
				return run.SSHEgress{}, fmt.Errorf("egress.ssh.keys (%s): your ssh-agent's socket %s belongs to uid %d, but the run's proxy runs as uid %d (airlock run as root runs sandboxes as uid 1000), which the agent would refuse: run airlock as the agent's user, or load the key with [egress.ssh] key_file", res.From("egress.ssh.keys"), sock, st.Uid, proxyUID)
			}
		}
	}
	have, err := agentKeys(sock)
	if err != nil {
		return run.SSHEgress{}, fmt.Errorf("egress.ssh.keys (%s): your ssh-agent (SSH_AUTH_SOCK=%s): %w", res.From("egress.ssh.keys"), sock, err)
	}
	for i, fp := range out.Keys {
		if !have[fp] {
			return run.SSHEgress{}, fmt.Errorf("egress.ssh.keys (%s): %s (%s) is not in your ssh-agent (SSH_AUTH_SOCK=%s): add it with ssh-add", res.From("egress.ssh.keys"), cfg.Keys[i], fp, sock)
		}
	}
	out.AgentSocket = sock
	return out, nil
}

// agentKeys lists the fingerprints of the keys in the ssh-agent at sock.
func agentKeys(sock string) (map[string]bool, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	keys, err := agent.NewClient(c).List()
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, k := range keys {
		have[ssh.FingerprintSHA256(k)] = true
	}
	return have, nil
}

// knownHosts gathers the known_hosts lines for the SSH hosts; an exact
// host without one is an error, since ssh in the sandbox would refuse it.
func (f *Factory) knownHosts(res *config.Resolved, rules []egress.Rule) (string, error) {
	files := res.Config.Egress.SSH.KnownHosts
	explicit := len(files) > 0
	if !explicit {
		files = []string{"/etc/ssh/ssh_known_hosts"}
		if home := f.Getenv("HOME"); home != "" {
			files = append([]string{filepath.Join(home, ".ssh", "known_hosts")}, files...)
		}
	}
	var kept strings.Builder
	found := map[string]bool{}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("egress.ssh.known_hosts (%s): %w", res.From("egress.ssh.known_hosts"), err)
		}
		lines, got := egress.FilterKnownHosts(data, rules)
		kept.Write(lines)
		for h := range got {
			found[h] = true
		}
	}
	for _, r := range rules {
		if strings.HasPrefix(r.Pattern, "*.") || found[r.Pattern] {
			continue
		}
		return "", fmt.Errorf("%s is allowed for SSH (port 22), but no known_hosts entry names it (looked in %s): connect once from this machine (ssh %s) to check and record its host key, or name a file in [egress.ssh] known_hosts",
			r.Pattern, strings.Join(files, ", "), r.Pattern)
	}
	return kept.String(), nil
}

// describeSSH says, before a run, which keys the sandbox may sign with and
// whose agent holds them.
func describeSSH(s run.SSHEgress) string {
	if len(s.Keys) == 0 {
		return ""
	}
	from := "your ssh-agent"
	if s.KeyFile != "" {
		from = s.KeyFile + " (held by the proxy)"
	}
	var b strings.Builder
	for _, k := range s.Keys {
		fmt.Fprintf(&b, "  ssh    %-32s may sign, from %s\n", k, from)
	}
	return b.String()
}
