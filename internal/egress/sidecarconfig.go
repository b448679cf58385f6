package egress

import (
	"encoding/json"
	"fmt"
	"os"
)

// SidecarConfig is what `airlock proxy serve` reads inside the sidecar: the
// run's resolved policy and where things are. It holds no secret; those are
// in SecretsFile, which the proxy deletes once it has read it.
type SidecarConfig struct {
	Mode       string   `json:"mode"`
	Allow      []string `json:"allow"`
	Deny       []string `json:"deny"`
	AllowCIDRs []string `json:"allow_cidrs"`

	ProxySocket string `json:"proxy_socket"`
	APISocket   string `json:"api_socket"`
	AuditLog    string `json:"audit_log"`
	// APIUpstream is the model API (or gateway) the API socket forwards to.
	APIUpstream string `json:"api_upstream"`
	SecretsFile string `json:"secrets_file"`
}

// SidecarSecrets are the credentials the proxy injects, and every secret it
// must never let out.
type SidecarSecrets struct {
	APIHeaders map[string]string `json:"api_headers"`
	Held       []string          `json:"held"`
}

// ReadJSON decodes a JSON file into v, naming the file in errors.
func ReadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// NewPolicy parses a policy from its written form; mode "" is allowlist.
func NewPolicy(mode string, allow, deny, cidrs []string) (Policy, error) {
	var p Policy
	var err error
	if mode == "" {
		mode = string(ModeAllowlist)
	}
	if p.Mode, err = ParseMode(mode); err != nil {
		return Policy{}, err
	}
	for _, a := range allow {
		r, err := ParseRule(a, "")
		if err != nil {
			return Policy{}, err
		}
		p.Allow = append(p.Allow, r)
	}
	for _, d := range deny {
		r, err := ParseRule(d, "")
		if err != nil {
			return Policy{}, err
		}
		p.Deny = append(p.Deny, r)
	}
	for _, c := range cidrs {
		pfx, err := ParseCIDR(c, "")
		if err != nil {
			return Policy{}, err
		}
		p.AllowCIDRs = append(p.AllowCIDRs, pfx)
	}
	return p, nil
}
