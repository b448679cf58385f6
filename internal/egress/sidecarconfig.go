package egress

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
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
	// APIRoutes are the only requests the API socket forwards; empty means
	// Claude Code's (DefaultAPIRoutes("claude")).
	APIRoutes []APIRoute `json:"api_routes,omitempty"`
	// APIStrip are the request headers the API socket drops before it sets
	// the real credential's; empty means x-api-key and Authorization.
	APIStrip []string `json:"api_strip,omitempty"`
	// APIUsage names the wire format of the model API's responses, for
	// metering; empty means Anthropic's.
	APIUsage string `json:"api_usage,omitempty"`
	// APIProvider and APIRegion price the metered usage
	// (APIConfig.Provider, Region): "anthropic" (or empty), "bedrock" or
	// "vertex", and the provider's region.
	APIProvider string `json:"api_provider,omitempty"`
	APIRegion   string `json:"api_region,omitempty"`
	// APICloud, when set, authenticates model requests with the cloud
	// credentials in SidecarSecrets.Cloud, which the host replaces by
	// writing CredentialsFile as they near expiry.
	APICloud        *CloudAuth `json:"api_cloud,omitempty"`
	CredentialsFile string     `json:"credentials_file,omitempty"`
	SecretsFile     string     `json:"secrets_file"`

	// MeterFile is where the proxy keeps its Meter; empty means
	// meter.json next to the audit log.
	MeterFile string `json:"meter_file,omitempty"`
	// The run's budget, enforced by the proxy; zero means no limit.
	MaxCostUSD float64   `json:"max_cost_usd,omitempty"`
	MaxTurns   int       `json:"max_turns,omitempty"`
	Deadline   time.Time `json:"deadline,omitzero"`
	// Timeout is the run's --timeout as given, for messages.
	Timeout string `json:"timeout,omitempty"`

	// Scan is how requests are scanned for credentials; nil is
	// DefaultScanConfig.
	Scan *ScanConfig `json:"scan,omitempty"`

	// SSHAgent is the filtered ssh-agent the proxy offers the sandbox;
	// nil for none (sshagent.go).
	SSHAgent *SSHAgentConfig `json:"ssh_agent,omitempty"`
}

// MeterPath is where the proxy writes its meter.
func (c SidecarConfig) MeterPath() string {
	if c.MeterFile != "" {
		return c.MeterFile
	}
	return filepath.Join(filepath.Dir(c.AuditLog), MeterFileName)
}

// MeterFileName is the meter's default name, in the proxy's egress
// directory.
const MeterFileName = "meter.json"

// SidecarSecrets are the credentials the proxy injects, and every secret it
// must never let out.
type SidecarSecrets struct {
	APIHeaders map[string]string `json:"api_headers"`
	Held       []string          `json:"held"`
	// Inject are the credentials added to intercepted hosts' requests,
	// and CA the run's interception CA (its key with it).
	Inject []Injection `json:"inject,omitempty"`
	CA     *CA         `json:"ca,omitempty"`

	// SSHKeys are the private keys (PEM) of the run's own ssh-agent, when
	// it has one instead of the user's (SSHAgentConfig).
	SSHKeys []string `json:"ssh_keys,omitempty"`

	// Cloud are the credentials APICloud authenticates with at first.
	Cloud *CloudCredentials `json:"cloud,omitempty"`
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
