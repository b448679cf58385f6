package egress

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// SSHKeyFingerprint is the SHA256 fingerprint of an [egress.ssh] keys
// entry: a fingerprint as ssh-keygen -l prints it ("SHA256:…"), or the
// path of a public key file (id_ed25519.pub).
func SSHKeyFingerprint(ref string) (string, error) {
	if rest, ok := strings.CutPrefix(ref, "SHA256:"); ok {
		if b, err := base64.RawStdEncoding.DecodeString(rest); err != nil || len(b) != 32 {
			return "", fmt.Errorf("%q is not a SHA256 key fingerprint (as `ssh-keygen -lf KEY` prints it)", ref)
		}
		return ref, nil
	}
	data, err := os.ReadFile(ref)
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		if _, perr := ssh.ParseRawPrivateKey(data); perr == nil || errors.As(perr, new(*ssh.PassphraseMissingError)) {
			return "", fmt.Errorf("%s is a private key; list its public key (%s.pub) or its fingerprint instead", ref, ref)
		}
		return "", fmt.Errorf("%s is not an OpenSSH public key: %w", ref, err)
	}
	return ssh.FingerprintSHA256(pub), nil
}

// LoadSSHKeyFile reads an unencrypted private key for the run's own
// ssh-agent and returns its public key's fingerprint.
func LoadSSHKeyFile(path string) (fingerprint string, pemKey []byte, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("private key: %w", err)
	}
	priv, err := ssh.ParseRawPrivateKey(data)
	if errors.As(err, new(*ssh.PassphraseMissingError)) {
		return "", nil, fmt.Errorf("%s is encrypted with a passphrase, which airlock does not ask for: add it to your ssh-agent (ssh-add %s) and list its public key in [egress.ssh] keys instead of key_file", path, path)
	}
	if err != nil {
		return "", nil, fmt.Errorf("%s is not a private key airlock can read: %w", path, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	return ssh.FingerprintSHA256(signer.PublicKey()), data, nil
}

// FilterKnownHosts keeps the known_hosts lines (OpenSSH's format: plain,
// bracketed host:port, hashed, and @cert-authority/@revoked markers)
// naming a host the rules allow on SSHPort, and reports which of the
// rules' exact host names had a line. Comments, blank lines and lines
// naming only other hosts are dropped: the sandbox learns no more of the
// user's hosts than it may reach. A wildcard rule keeps lines whose plain
// names it matches; hashed names can only be matched to exact rules.
func FilterKnownHosts(data []byte, rules []Rule) (kept []byte, found map[string]bool) {
	found = map[string]bool{}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		hostsField := fields[0]
		if strings.HasPrefix(hostsField, "@") && len(fields) > 1 {
			hostsField = fields[1]
		}
		keep := false
		for _, h := range strings.Split(hostsField, ",") {
			for _, r := range rules {
				if knownHostMatches(h, r) {
					keep = true
					if !strings.HasPrefix(r.Pattern, "*.") {
						found[r.Pattern] = true
					}
				}
			}
		}
		if keep {
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes(), found
}

// knownHostMatches reports whether one host entry of a known_hosts line
// names a host the rule allows on SSHPort. Negated entries and entries
// with wildcards of their own never count.
func knownHostMatches(entry string, r Rule) bool {
	if rest, ok := strings.CutPrefix(entry, "|1|"); ok {
		if strings.HasPrefix(r.Pattern, "*.") {
			return false
		}
		salt64, hash64, ok := strings.Cut(rest, "|")
		salt, err1 := base64.StdEncoding.DecodeString(salt64)
		want, err2 := base64.StdEncoding.DecodeString(hash64)
		if !ok || err1 != nil || err2 != nil {
			return false
		}
		mac := hmac.New(sha1.New, salt)
		mac.Write([]byte(r.Pattern))
		return hmac.Equal(mac.Sum(nil), want)
	}
	if strings.ContainsAny(entry, "*?!") {
		return false
	}
	host := entry
	if strings.HasPrefix(entry, "[") {
		h, port, ok := strings.Cut(strings.TrimPrefix(entry, "["), "]:")
		if !ok || port != fmt.Sprint(SSHPort) {
			return false
		}
		host = h
	}
	canon, err := Canonical(host)
	return err == nil && r.matchHost(canon)
}

// SSHRules are the allow rules that name SSHPort explicitly: the hosts a
// run may reach over SSH.
func SSHRules(p Policy) []Rule {
	var out []Rule
	for _, r := range p.Allow {
		for _, port := range r.Ports {
			if port == SSHPort {
				out = append(out, r)
				break
			}
		}
	}
	return out
}
