package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// KindSSHAgent records a request to the sandbox's ssh-agent.
const KindSSHAgent = "ssh-agent"

// SSHAgentConfig is the ssh-agent the proxy offers the sandbox: a filter in
// front of the user's own agent (mounted into the proxy's container) or of
// a keyring of the run's own, loaded from the secrets file.
type SSHAgentConfig struct {
	// Socket is where the sandbox reaches it, in the shared socket
	// directory.
	Socket string `json:"socket"`
	// Upstream is the user's agent's socket as mounted in the proxy; ""
	// means the keys in SidecarSecrets.SSHKeys.
	Upstream string `json:"upstream,omitempty"`
	// Keys are the SHA256 fingerprints of the only keys the sandbox may
	// see and sign with.
	Keys []string `json:"keys"`
}

// SSHAgent is the sandbox's ssh-agent: it lists only the allowed keys,
// signs only with them, and refuses everything else an agent can be asked
// (adding, removing, locking, extensions). Every signature and every
// refusal goes to the audit log with the key's fingerprint, never the
// data signed.
type SSHAgent struct {
	allowed map[string]bool
	// upstream opens the agent behind the filter, once per connection.
	upstream func() (agent.ExtendedAgent, io.Closer, error)
	audit    *AuditLog
}

// NewSSHAgent builds the filter from its configuration; keys are the
// private keys (PEM, unencrypted) of a keyring of its own when
// cfg.Upstream is "".
func NewSSHAgent(cfg SSHAgentConfig, keys []string, audit *AuditLog) (*SSHAgent, error) {
	a := &SSHAgent{allowed: map[string]bool{}, audit: audit}
	for _, k := range cfg.Keys {
		a.allowed[k] = true
	}
	if len(a.allowed) == 0 {
		return nil, errors.New("ssh-agent: no keys are allowed")
	}
	if cfg.Upstream != "" {
		path := cfg.Upstream
		a.upstream = func() (agent.ExtendedAgent, io.Closer, error) {
			c, err := net.Dial("unix", path)
			if err != nil {
				return nil, nil, fmt.Errorf("the user's ssh-agent: %w", err)
			}
			return agent.NewClient(c), c, nil
		}
		return a, nil
	}
	ring := agent.NewKeyring().(agent.ExtendedAgent)
	for i, pemKey := range keys {
		priv, err := ssh.ParseRawPrivateKey([]byte(pemKey))
		if err != nil {
			return nil, fmt.Errorf("ssh-agent: key %d: %w", i+1, err)
		}
		if err := ring.Add(agent.AddedKey{PrivateKey: priv, Comment: "airlock key_file"}); err != nil {
			return nil, fmt.Errorf("ssh-agent: key %d: %w", i+1, err)
		}
	}
	a.upstream = func() (agent.ExtendedAgent, io.Closer, error) { return ring, io.NopCloser(nil), nil }
	return a, nil
}

// Serve answers agent requests on ln until ctx ends, then closes ln and
// every open connection.
func (a *SSHAgent) Serve(ctx context.Context, ln net.Listener) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ssh-agent: %w", err)
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			a.serveConn(c)
		}()
	}
}

func (a *SSHAgent) serveConn(c net.Conn) {
	up, closer, err := a.upstream()
	if err != nil {
		a.log("connect", "", false, err.Error())
		return
	}
	defer closer.Close()
	_ = agent.ServeAgent(&filteredAgent{a: a, up: up}, c)
}

func (a *SSHAgent) log(method, fingerprint string, allowed bool, reason string) {
	_ = a.audit.Write(Record{Kind: KindSSHAgent, Method: method, Rule: fingerprint, Allowed: allowed, Reason: reason})
}

// filteredAgent is one connection's view of the upstream agent.
type filteredAgent struct {
	a  *SSHAgent
	up agent.ExtendedAgent
}

func (f *filteredAgent) List() ([]*agent.Key, error) {
	keys, err := f.up.List()
	if err != nil {
		return nil, err
	}
	var out []*agent.Key
	for _, k := range keys {
		if f.a.allowed[ssh.FingerprintSHA256(k)] {
			out = append(out, k)
		}
	}
	return out, nil
}

func (f *filteredAgent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return f.SignWithFlags(key, data, 0)
}

func (f *filteredAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	fp := ssh.FingerprintSHA256(key)
	if !f.a.allowed[fp] {
		f.a.log("sign", fp, false, "key not allowed: only the keys in [egress.ssh] keys may sign")
		return nil, errors.New("airlock: this key may not sign")
	}
	sig, err := f.up.SignWithFlags(key, data, flags)
	if err != nil {
		f.a.log("sign", fp, true, "upstream error: "+err.Error())
		return nil, err
	}
	f.a.log("sign", fp, true, "signed with "+key.Type())
	return sig, nil
}

// refuse answers every request that would change the agent.
func (f *filteredAgent) refuse(method string, key ssh.PublicKey) error {
	fp := ""
	if key != nil {
		fp = ssh.FingerprintSHA256(key)
	}
	f.a.log(method, fp, false, "refused: the sandbox's ssh-agent only lists and signs")
	return errors.New("airlock: refused: the sandbox's ssh-agent only lists and signs")
}

func (f *filteredAgent) Add(k agent.AddedKey) error {
	var pub ssh.PublicKey
	if s, err := ssh.NewSignerFromKey(k.PrivateKey); err == nil {
		pub = s.PublicKey()
	}
	return f.refuse("add", pub)
}

func (f *filteredAgent) Remove(key ssh.PublicKey) error { return f.refuse("remove", key) }
func (f *filteredAgent) RemoveAll() error               { return f.refuse("remove-all", nil) }
func (f *filteredAgent) Lock([]byte) error              { return f.refuse("lock", nil) }
func (f *filteredAgent) Unlock([]byte) error            { return f.refuse("unlock", nil) }

// Signers is not part of the protocol: ServeAgent never calls it.
func (f *filteredAgent) Signers() ([]ssh.Signer, error) {
	return nil, errors.New("airlock: no signers")
}

// Extension refuses every extension: OpenSSH's session-bind and the like
// are optional, and the rest could reach the user's agent unfiltered.
func (f *filteredAgent) Extension(string, []byte) ([]byte, error) {
	return nil, agent.ErrExtensionUnsupported
}
