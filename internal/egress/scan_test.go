package egress

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
)

func TestScannerRules(t *testing.T) {
	s := NewScanner(nil)
	positives := []struct{ rule, text string }{
		{"anthropic-api-key", "x-api-key: sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"},
		{"openai-api-key", "/v1?key=sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"},
		{"openai-api-key", "sk-AbCdEfGhIjKlMnOpQrT3BlbkFJStUvWxYz0123456789ab"},
		{"github-pat", "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"},
		{"github-oauth-token", "gho_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"},
		{"github-app-token", "ghs_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"},
		{"github-refresh-token", "ghr_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"},
		{"github-app-token", "ghu_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"},
		{"github-fine-grained-pat", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"},
		{"aws-access-key-id", "AKIAIOSFODNN7EXAMPLE"},
		{"aws-access-key-id", "id=ASIAY34FZKBOKMUTVV7A"},
		{"aws-secret-access-key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"gcp-api-key", "key=AIzaSyA-1234567890abcdefghijklmnopqrstu"},
		{"gcp-service-account", `{"type": "service_account", "project_id": "p"}`},
		{"slack-token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKl"},
		{"slack-token", "xoxp-123456789012-abcdef"},
		{"slack-webhook", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"},
		{"npm-token", "npm_abcdefghijklmnopqrstuvwxyz0123456789"},
		{"pypi-token", "pypi-AgEIcHlwaS5vcmcCJDAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMAACKlsz"},
		{"private-key", "-----BEGIN RSA PRIVATE KEY-----"},
		{"openssh-private-key", "-----BEGIN%20OPENSSH%20PRIVATE%20KEY-----"},
		{"private-key", "-----BEGIN PRIVATE KEY-----"},
		{"jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"},
		{"github-pat", "q=ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789" + "%2520"},
		{"anthropic-api-key", url.QueryEscape(url.QueryEscape("k=sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"))},
	}
	for _, tc := range positives {
		rule, found := s.Scan(tc.text)
		if !found || rule != tc.rule {
			t.Errorf("Scan(%q) = %q, %v; want %q", tc.text, rule, found, tc.rule)
		}
	}
	negatives := []string{
		"GET /v1/messages?beta=true",
		"https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
		"/repos/cli/cli/pulls?state=open&per_page=100",
		"Accept: application/vnd.github+json",
		"User-Agent: claude-cli/2.1.30 (external, cli)",
		"sk-learn is not a key",
		"/wiki/AKIA",
		"ghp_short",
		"eyJhbGciOiJIUzI1NiJ9",
		"-----BEGIN CERTIFICATE-----",
		"/search?q=type%20service%20account",
		"Authorization: Bearer placeholder-for-airlock",
	}
	for _, text := range negatives {
		if rule, found := s.Scan(text); found {
			t.Errorf("Scan(%q) found %q, want nothing", text, rule)
		}
	}
}

func TestScannerHeldSecrets(t *testing.T) {
	secret := "real-key-7f3a9c2e41b8d650"
	s := NewScanner([]string{secret, "short"})
	b := []byte(secret)
	encodings := map[string]string{
		"verbatim":        "x-data: " + secret,
		"base64 std":      base64.StdEncoding.EncodeToString(b),
		"base64 raw":      base64.RawStdEncoding.EncodeToString(b),
		"base64 url":      base64.URLEncoding.EncodeToString(b),
		"base64 offset 1": base64.StdEncoding.EncodeToString(append([]byte("a"), b...)),
		"base64 offset 2": base64.StdEncoding.EncodeToString(append([]byte("ab"), append(b, "trailing"...)...)),
		"base64 inside":   "d=" + base64.URLEncoding.EncodeToString([]byte(`{"k":"`+secret+`"}`)),
		"hex":             hex.EncodeToString(b),
		"HEX":             strings.ToUpper(hex.EncodeToString(b)),
		"urlencoded":      url.QueryEscape("k=" + secret),
		"double encoded":  url.QueryEscape(url.QueryEscape(secret)),
	}
	for name, text := range encodings {
		rule, found := s.Scan(text)
		if !found || !strings.HasPrefix(rule, "held-secret") {
			t.Errorf("%s: Scan(%q) = %q, %v; want a held-secret rule", name, text, rule, found)
		}
		if strings.Contains(rule, secret) {
			t.Errorf("%s: rule name %q contains the secret", name, rule)
		}
	}
	for _, text := range []string{"short", "real-key", base64.StdEncoding.EncodeToString([]byte("real-key-7f3a"))} {
		if rule, found := s.Scan(text); found {
			t.Errorf("Scan(%q) found %q, want nothing", text, rule)
		}
	}
}

func TestScannerHosts(t *testing.T) {
	secret := "Hk3r9TzQ2mVx8LwP5nYb"
	s := NewScanner([]string{secret})
	positives := map[string]string{
		"held split":              "hk3r9.tzq2m.vx8lw.p5nyb.exfil.example.com",
		"held hex split":          hex.EncodeToString([]byte(secret))[:20] + "." + hex.EncodeToString([]byte(secret))[20:] + ".example.com",
		"held after a label":      "data.hk3r9tzq2mvx8lwp5nyb.example.com",
		"aws id lowercased split": "akiaiosf.odnn7example.example.com",
		"github token split":      "ghp_aBcDeFgHiJkLmNoPqRs.TuVwXyZ0123456789.example.com",
	}
	for name, host := range positives {
		if rule, found := s.ScanHost(host); !found {
			t.Errorf("%s: ScanHost(%q) found nothing", name, host)
		} else if strings.Contains(strings.ToLower(rule), strings.ToLower(secret)) {
			t.Errorf("%s: rule %q names the secret", name, rule)
		}
	}
	for _, host := range []string{"api.anthropic.com", "registry.npmjs.org", "objects.githubusercontent.com", "a1b2c3d4e5f6.cloudfront.net"} {
		if rule, found := s.ScanHost(host); found {
			t.Errorf("ScanHost(%q) found %q, want nothing", host, rule)
		}
	}
}
