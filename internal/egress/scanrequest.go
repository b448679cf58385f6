package egress

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Rule names that are not credential formats.
const (
	// EntropyRule is a random-looking token of no known format.
	EntropyRule = "high-entropy-token"
	// UninspectableRule is a body in a Content-Encoding the scanner cannot
	// decode (anything but gzip, deflate and identity).
	UninspectableRule = "uninspectable-body"
)

// Hit is what the scanner found in a request: the rule's name and where,
// never the matched text.
type Hit struct {
	Rule  string // "stripe-secret-key", "held-secret", EntropyRule...
	Where string // `query value "key"`, "header X-Data", "body", "URL path"
	// Held is a secret airlock holds: refused whatever the host's scan
	// mode.
	Held bool
}

func (h *Hit) String() string { return h.Rule + " in " + h.Where }

func newHit(rule, where string) *Hit {
	return &Hit{Rule: rule, Where: where, Held: strings.HasPrefix(rule, "held-secret")}
}

// entropyExemptHeaders carry values the server chose or the protocol
// requires to be random; entropy detection skips them (the credential
// rules and held secrets still apply).
var entropyExemptHeaders = map[string]bool{
	"Cookie":            true, // session ids the server set
	"If-None-Match":     true, // ETags the server sent
	"If-Match":          true,
	"If-Range":          true,
	"Sec-Websocket-Key": true, // a random nonce by definition (RFC 6455)
	"Content-Md5":       true, // digests of the body
	"Digest":            true,
	"Content-Digest":    true,
	"Repr-Digest":       true,
}

// ScanRequest scans what r carries besides its host: the request target
// (path and query), every header line, and the first bodyLimit bytes of
// the body (none when bodyLimit is 0), with the credential rules, the held
// secrets and, in the URL and header values, entropy detection. The body's
// prefix is read and put back: r.Body still yields the whole body. It
// returns nil when nothing is found; the error is a failure to read the
// body.
func (s *Scanner) ScanRequest(r *http.Request, bodyLimit int64) (*Hit, error) {
	return s.scanRequest(r, bodyLimit, false)
}

// ScanRequestHeld is ScanRequest for the held secrets alone.
func (s *Scanner) ScanRequestHeld(r *http.Request, bodyLimit int64) (*Hit, error) {
	return s.scanRequest(r, bodyLimit, true)
}

func (s *Scanner) scanRequest(r *http.Request, bodyLimit int64, heldOnly bool) (*Hit, error) {
	if h := s.scanTarget(r, heldOnly); h != nil {
		return h, nil
	}
	if h := s.scanHeaders(r.Header, heldOnly); h != nil {
		return h, nil
	}
	if bodyLimit <= 0 || r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	return s.scanBody(r, bodyLimit, heldOnly)
}

// scanTarget scans the request target, then says where the hit is.
func (s *Scanner) scanTarget(r *http.Request, heldOnly bool) *Hit {
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	path, query := r.URL.EscapedPath(), r.URL.RawQuery
	params := splitQuery(query)
	if rule, hit := s.scan(uri, heldOnly); hit {
		if _, inPath := s.scan(path, heldOnly); inPath {
			return newHit(rule, "URL path")
		}
		for _, p := range params {
			if _, inValue := s.scan(p.value, heldOnly); inValue {
				return newHit(rule, s.queryWhere(p.key))
			}
		}
		return newHit(rule, "URL")
	}
	if heldOnly {
		return nil
	}
	for _, seg := range strings.Split(path, "/") {
		if dec, err := url.PathUnescape(seg); err == nil {
			seg = dec
		}
		if highEntropyToken(seg) {
			return newHit(EntropyRule, "URL path")
		}
	}
	for _, p := range params {
		if highEntropyToken(p.key) {
			return newHit(EntropyRule, "a query parameter name")
		}
		if highEntropyToken(p.value) {
			return newHit(EntropyRule, s.queryWhere(p.key))
		}
	}
	return nil
}

type queryParam struct{ key, value string }

// splitQuery decodes a raw query leniently: a pair that does not decode is
// kept as sent.
func splitQuery(raw string) []queryParam {
	var out []queryParam
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if dec, err := url.QueryUnescape(k); err == nil {
			k = dec
		}
		if dec, err := url.QueryUnescape(v); err == nil {
			v = dec
		}
		out = append(out, queryParam{k, v})
	}
	return out
}

func (s *Scanner) queryWhere(key string) string {
	if s.nameSafe(key) {
		return "query value " + strconv.Quote(key)
	}
	return "a query value"
}

// nameRE is a parameter or header name that may be quoted in a refusal.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,40}$`)

// nameSafe reports whether a name the agent chose can be shown in a
// refusal and the audit log: short, plain, and no secret itself.
func (s *Scanner) nameSafe(name string) bool {
	if !nameRE.MatchString(name) || highEntropyToken(name) {
		return false
	}
	_, hit := s.Scan(name)
	return !hit
}

func (s *Scanner) headerWhere(name string) string {
	if s.nameSafe(name) {
		return "header " + name
	}
	return "a header"
}

func (s *Scanner) scanHeaders(h http.Header, heldOnly bool) *Hit {
	names := make([]string, 0, len(h))
	var block strings.Builder
	for k, vs := range h {
		names = append(names, k)
		for _, v := range vs {
			block.WriteString(k + ": " + v + "\n")
		}
	}
	sort.Strings(names)
	// One pass over the whole block; only a hit is located line by line.
	if rule, hit := s.scan(block.String(), heldOnly); hit {
		for _, k := range names {
			for _, v := range h[k] {
				if _, inLine := s.scan(k+": "+v, heldOnly); inLine {
					return newHit(rule, s.headerWhere(k))
				}
			}
		}
		return newHit(rule, "headers")
	}
	for _, k := range names {
		for _, v := range h[k] {
			if dec, ok := basicCredentials(k, v); ok {
				if rule, hit := s.scan(dec, heldOnly); hit {
					return newHit(rule, s.headerWhere(k))
				}
				// The base64 of any user:password looks random; what
				// it encodes is judged instead.
				v = dec
			}
			if !heldOnly && !entropyExemptHeaders[k] && (highEntropyToken(v) || highEntropyToken(k)) {
				return newHit(EntropyRule, s.headerWhere(k))
			}
		}
	}
	return nil
}

// basicCredentials decodes an Authorization: Basic value, whose base64
// would hide a known format from the rules.
func basicCredentials(name, value string) (string, bool) {
	if name != "Authorization" && name != "Proxy-Authorization" {
		return "", false
	}
	scheme, enc, ok := strings.Cut(strings.TrimSpace(value), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", false
	}
	return string(dec), true
}
