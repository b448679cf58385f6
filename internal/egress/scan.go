package egress

import (
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
)

// minHeld is the shortest held secret the scanner looks for: shorter
// strings would match ordinary traffic.
const minHeld = 8

// Scanner looks for credentials in outbound request metadata.
type Scanner struct {
	rules *ruleSet
	// held are the encodings of secrets airlock itself holds, each mapped
	// to the rule name reported for it. The rules' case-sensitive keyword
	// index also holds them, numbered after the rules, so that one pass
	// over a text finds both.
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
		s.rules.exact.add(text, len(s.rules.rules)+len(s.held))
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
	return s.scan(text, false)
}

// scan is Scan; with heldOnly it looks for the held secrets alone.
func (s *Scanner) scan(text string, heldOnly bool) (rule string, found bool) {
	for range 4 {
		if rule, ok := s.scanOnce(text, heldOnly); ok {
			return rule, true
		}
		// Only percent-escapes can hide a token; '+' for a space cannot.
		if !strings.Contains(text, "%") {
			break
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

func (s *Scanner) scanOnce(text string, heldOnly bool) (string, bool) {
	rules := s.rules
	present := make([]bool, len(rules.rules)+len(s.held))
	fold := &rules.fold
	if heldOnly {
		fold = nil
	}
	markAll(text, &rules.exact, fold, present)
	for i, p := range present[len(rules.rules):] {
		if p {
			return s.held[i].name, true
		}
	}
	if heldOnly {
		return "", false
	}
	return rules.match(text, present)
}

// ScanHost scans a host name for secrets, also with its dots removed from
// each label on (a secret split across subdomain labels) and, for held
// secrets and upper-case-only formats, ignoring case, since DNS names are
// case-insensitive and an agent can lower-case what it smuggles.
func (s *Scanner) ScanHost(host string) (rule string, found bool) {
	return s.scanHost(host, false)
}

func (s *Scanner) scanHost(host string, heldOnly bool) (rule string, found bool) {
	if rule, ok := s.scan(host, heldOnly); ok {
		return rule, true
	}
	labels := strings.Split(host, ".")
	for i := range labels {
		joined := strings.Join(labels[i:], "")
		for _, t := range []string{joined, strings.ToUpper(joined)} {
			if rule, ok := s.scanOnce(t, heldOnly); ok {
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
