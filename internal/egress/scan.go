package egress

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"regexp"
	"strings"
)

// minHeld is the shortest held secret the scanner looks for: shorter
// strings would match ordinary traffic.
const minHeld = 8

// secretRule is one pattern of a well-known credential format.
type secretRule struct {
	name string
	re   *regexp.Regexp
}

// curatedRules covers the credential formats an agent is most likely to
// find in a repository or environment. gitleaks' 200-odd rules were
// considered; its Go package pulls ~200 modules and a global viper into the
// proxy for little gain over these.
func curatedRules() []secretRule {
	list := []struct{ name, re string }{
		{"anthropic-api-key", `sk-ant-[A-Za-z0-9_-]{20,}`},
		{"openai-api-key", `\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]+|\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9]{40,}`},
		{"github-token", `\bgh[pousr]_[A-Za-z0-9]{36,}`},
		{"github-fine-grained-pat", `\bgithub_pat_[A-Za-z0-9_]{22,}`},
		{"aws-access-key-id", `\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}`},
		{"aws-secret-access-key", `(?i)aws.{0,20}(?:secret|key).{0,20}?['"=:\s]{1,4}[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+]|$)`},
		{"gcp-api-key", `\bAIza[0-9A-Za-z_-]{35}`},
		{"gcp-service-account", `"type"\s*:\s*"service_account"`},
		{"slack-token", `\bxox[abposr]-[A-Za-z0-9-]{10,}|\bxapp-\d-[A-Za-z0-9-]{10,}`},
		{"slack-webhook", `hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}`},
		{"npm-token", `\bnpm_[A-Za-z0-9]{36}`},
		{"pypi-token", `pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{40,}`},
		{"private-key", `-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----`},
		{"jwt", `\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`},
	}
	out := make([]secretRule, len(list))
	for i, r := range list {
		out[i] = secretRule{r.name, regexp.MustCompile(r.re)}
	}
	return out
}

// Scanner looks for credentials in outbound request metadata.
type Scanner struct {
	rules []secretRule
	// held are the encodings of secrets airlock itself holds, each mapped
	// to the rule name reported for it.
	held []heldForm
}

type heldForm struct {
	text, name string
}

// NewScanner returns a scanner for the curated credential rules plus the
// secrets airlock holds, which it finds verbatim and base64- (standard and
// URL alphabet, padded or not, at any alignment inside a longer base64
// string), hex- and URL-encoded. Held secrets shorter than 8 bytes are
// ignored.
func NewScanner(held []string) *Scanner {
	s := &Scanner{rules: curatedRules()}
	seen := map[string]bool{}
	add := func(text, name string) {
		if len(text) < minHeld || seen[text] {
			return
		}
		seen[text] = true
		s.held = append(s.held, heldForm{text, name})
	}
	for _, h := range held {
		if len(h) < minHeld {
			continue
		}
		add(h, "held-secret")
		add(url.QueryEscape(h), "held-secret-urlencoded")
		add(url.PathEscape(h), "held-secret-urlencoded")
		add(hex.EncodeToString([]byte(h)), "held-secret-hex")
		add(strings.ToUpper(hex.EncodeToString([]byte(h))), "held-secret-hex")
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			for _, core := range base64Cores(enc, h) {
				add(core, "held-secret-base64")
			}
		}
	}
	return s
}

// base64Cores returns, for each of the three alignments a secret can have
// inside a longer byte stream, the base64 characters that depend only on
// the secret's bytes. Whatever surrounds the secret, its encoding contains
// one of them.
func base64Cores(enc *base64.Encoding, secret string) []string {
	var out []string
	for k, start := range []int{0, 2, 3} {
		raw := enc.EncodeToString(append(make([]byte, k), secret...))
		end := len(raw)
		if (k+len(secret))%3 != 0 {
			end-- // the last character also depends on what follows
		}
		if end > start {
			out = append(out, raw[start:end])
		}
	}
	return out
}

// Scan reports the name of the first rule that matches text, or of the
// held secret found in it, never the secret itself. URL-encoded text is
// decoded (up to three times) and scanned as well.
func (s *Scanner) Scan(text string) (rule string, found bool) {
	for range 4 {
		if rule, ok := s.scanOnce(text); ok {
			return rule, true
		}
		dec, err := url.QueryUnescape(text)
		if err != nil {
			dec, err = url.PathUnescape(text)
		}
		if err != nil || dec == text {
			break
		}
		text = dec
	}
	return "", false
}

func (s *Scanner) scanOnce(text string) (string, bool) {
	for _, h := range s.held {
		if strings.Contains(text, h.text) {
			return h.name, true
		}
	}
	for _, r := range s.rules {
		if r.re.MatchString(text) {
			return r.name, true
		}
	}
	return "", false
}

// ScanHost scans a host name for secrets, also with its dots removed from
// each label on (a secret split across subdomain labels) and, for held
// secrets and upper-case-only formats, ignoring case, since DNS names are
// case-insensitive and an agent can lower-case what it smuggles.
func (s *Scanner) ScanHost(host string) (rule string, found bool) {
	if rule, ok := s.Scan(host); ok {
		return rule, true
	}
	labels := strings.Split(host, ".")
	for i := range labels {
		joined := strings.Join(labels[i:], "")
		for _, t := range []string{joined, strings.ToUpper(joined)} {
			if rule, ok := s.scanOnce(t); ok {
				return rule, true
			}
		}
		lower := strings.ToLower(joined)
		for _, h := range s.held {
			if strings.Contains(lower, strings.ToLower(h.text)) {
				return h.name, true
			}
		}
	}
	return "", false
}
