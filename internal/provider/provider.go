// Package provider finds the host's credentials for the model providers the
// egress proxy signs for: Amazon Bedrock (SigV4, through aws-sdk-go-v2) and
// Google Vertex (OAuth bearer tokens, through golang.org/x/oauth2/google).
// These credentials never enter the sandbox: the proxy signs each request
// with what a Source yields, and asks again as they near expiry.
package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The providers a run can use besides the Anthropic API.
const (
	Bedrock = "bedrock"
	Vertex  = "vertex"
)

// RefreshAhead is how long before expiry a Source fetches new credentials,
// so that a request signed now is not refused in flight.
const RefreshAhead = 5 * time.Minute

// Settings are the non-secret choices that select a provider's credentials;
// a run records them (JSON) so that any process supervising it can fetch
// fresh credentials again.
type Settings struct {
	Provider        string `json:"provider"`
	Region          string `json:"region,omitempty"`           // AWS region / Vertex location
	Project         string `json:"project,omitempty"`          // Vertex project id
	Profile         string `json:"profile,omitempty"`          // AWS profile ("" = default)
	ConfigFile      string `json:"config_file,omitempty"`      // AWS_CONFIG_FILE as resolved
	CredentialsFile string `json:"credentials_file,omitempty"` // AWS_SHARED_CREDENTIALS_FILE / the ADC file for Vertex
	// Static: the credentials came from variables (environment or airlock's
	// credentials file), which another process cannot read again; nothing to
	// refresh.
	Static bool `json:"static,omitempty"`
}

// AWSCredentials are what SigV4 signs with.
type AWSCredentials struct{ AccessKeyID, SecretAccessKey, SessionToken string }

// Credentials are what the proxy signs with. Secret.
type Credentials struct {
	AWS     *AWSCredentials // SigV4 (Bedrock)
	Bearer  string          // Vertex access token, or a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK)
	Expires time.Time       // zero: does not expire
}

// Secrets returns every secret value in c (for the proxy's secret scan).
// The access key id is included: it is not secret on its own, but it has no
// business leaving the host by another route either.
func (c Credentials) Secrets() []string {
	var out []string
	add := func(v string) {
		if v != "" {
			out = append(out, v)
		}
	}
	if c.AWS != nil {
		add(c.AWS.AccessKeyID)
		add(c.AWS.SecretAccessKey)
		add(c.AWS.SessionToken)
	}
	add(c.Bearer)
	return out
}

// Source yields a provider's credentials.
type Source interface {
	// Credentials returns usable credentials, refreshed ahead of expiry (at
	// least RefreshAhead before).
	Credentials(ctx context.Context) (Credentials, error)
	Describe() Description
}

// Description is what `airlock credentials ls` and `airlock doctor` show:
// nothing secret.
type Description struct {
	Provider                 string
	Region, Project, Profile string
	From                     string // where the credentials come from, e.g. "profile dev in ~/.aws/config (SSO)"
	Identity                 string // the access key id or the service account email, when known
	Expires                  time.Time
}

// Title is the provider's name as users know it.
func Title(provider string) string {
	switch provider {
	case Bedrock:
		return "Bedrock"
	case Vertex:
		return "Vertex"
	}
	return provider
}

// Selected says which provider the variables select, the way Claude Code
// does (CLAUDE_CODE_USE_BEDROCK / CLAUDE_CODE_USE_VERTEX); "" for the
// Anthropic API.
func Selected(lookup func(string) (string, bool)) string {
	on := func(name string) bool {
		v, _ := lookup(name)
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "", "0", "false", "no", "off":
			return false
		}
		return true
	}
	switch {
	case on("CLAUDE_CODE_USE_BEDROCK"):
		return Bedrock
	case on("CLAUDE_CODE_USE_VERTEX"):
		return Vertex
	}
	return ""
}

// Resolve picks the settings for provider from lookup (the environment and
// airlock's credentials file). It reads the region (AWS_REGION or
// AWS_DEFAULT_REGION; CLOUD_ML_REGION) and the Vertex project
// (ANTHROPIC_VERTEX_PROJECT_ID), which Claude Code requires too, and where
// the credentials live: AWS_PROFILE, AWS_CONFIG_FILE,
// AWS_SHARED_CREDENTIALS_FILE, GOOGLE_APPLICATION_CREDENTIALS,
// CLOUDSDK_CONFIG, HOME.
func Resolve(provider string, lookup func(string) (string, bool)) (Settings, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	switch provider {
	case Bedrock:
		return resolveBedrock(get)
	case Vertex:
		return resolveVertex(get)
	}
	return Settings{}, fmt.Errorf("unknown model provider %q: use %s or %s", provider, Bedrock, Vertex)
}

// Open returns a source for s. Static credentials are read from lookup
// again, the only place they exist.
func Open(ctx context.Context, s Settings, lookup func(string) (string, bool)) (Source, error) {
	return open(ctx, s, lookup, hostFirmware{dir: "/sys/class/dmi/id"})
}

func open(ctx context.Context, s Settings, lookup func(string) (string, bool), fw hostFirmware) (Source, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	switch s.Provider {
	case Bedrock:
		return openBedrock(ctx, s, get, fw)
	case Vertex:
		return openVertex(ctx, s, get, fw)
	}
	return nil, fmt.Errorf("unknown model provider %q: use %s or %s", s.Provider, Bedrock, Vertex)
}

// hostFirmware reads the machine's DMI data, which says whether this is a
// cloud VM with a metadata server. Only then may credentials be asked of
// 169.254.169.254: anywhere else that address is someone else's.
type hostFirmware struct{ dir string }

func (h hostFirmware) read(name string) string {
	if h.dir == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(h.dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// onEC2: Nitro instances say "Amazon EC2" as vendor; Xen ones carry
// "amazon" in the BIOS version.
func (h hostFirmware) onEC2() bool {
	for _, f := range []string{"sys_vendor", "board_vendor", "product_name"} {
		if strings.Contains(h.read(f), "Amazon EC2") {
			return true
		}
	}
	return strings.Contains(strings.ToLower(h.read("bios_version")), "amazon")
}

func (h hostFirmware) onGCE() bool {
	return strings.Contains(h.read("product_name"), "Google") || strings.Contains(h.read("sys_vendor"), "Google")
}

// tildify shows a path under home as ~/...
func tildify(path, home string) string {
	if home != "" && home != "/" {
		if rel, err := filepath.Rel(home, path); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return "~/" + rel
		}
	}
	return path
}

func fileExists(path string) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.IsDir():
		return false, fmt.Errorf("%s is a directory, not a credentials file", path)
	}
	return true, nil
}
