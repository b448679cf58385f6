package egress

import (
	"math"
	"strings"
)

// Entropy detection finds secrets of formats no rule knows: a token of at
// least minEntropyLen characters, mixing upper case, lower case and digits,
// whose Shannon entropy per character reaches entropyThreshold(len). Tokens
// are the runs of characters base64 and most token formats use
// ([A-Za-z0-9+/=_-]); a URL path is split into its segments first, and
// '.', ':', '~', '%' and everything else end a token.
//
// What real package-manager and git traffic sends stays below it, or is
// exempt (testdata/benign holds the requests this is checked against):
//   - hex of any length (commit ids, content hashes, by-hash paths, PyPI's
//     /packages/xx/yy/<hash>/ paths, npm-session ids, ETags): digits and
//     one case of letters only, so never all three classes;
//   - UUIDs and Go pseudo-versions (v0.0.0-20240101120000-abcdef123456):
//     hex and digits, and the dots split versions;
//   - Subresource Integrity strings (sha512-<base64>, also sha1-, sha256-,
//     sha384-) and go.sum hashes (h1:<base64>), wherever they appear;
//   - identifiers and file names, whose letters repeat: a 24-character
//     camel-case name with a digit is near 4 bits per character.
//
// A random base62 token of 40 characters is at 4.45 bits per character or
// more in 99% of draws; the cap of 4.4 catches those, and the length-scaled
// threshold below 40 characters catches most shorter ones without flagging
// names (TestEntropyDetectsRandomTokens measures both).
const (
	minEntropyLen = 20
	maxThreshold  = 4.4
)

// entropyThreshold is the bits per character a token of n characters must
// reach: a random string cannot exceed log2(n), so shorter tokens get a
// threshold that far below their ceiling, capped at maxThreshold.
func entropyThreshold(n int) float64 {
	return math.Min(maxThreshold, math.Log2(float64(n))-0.45)
}

// shannon is the entropy of s in bits per byte.
func shannon(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	h, n := 0.0, float64(len(s))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '+' || c == '/' || c == '=' || c == '_' || c == '-'
}

// integrityPrefixes are the places base64 digests legitimately appear.
var integrityPrefixes = []string{"sha1-", "sha256-", "sha384-", "sha512-", "h1:"}

// highEntropyToken reports whether text contains a token that looks like a
// random secret.
func highEntropyToken(text string) bool {
	for i := 0; i < len(text); {
		if !tokenChar(text[i]) {
			i++
			continue
		}
		j := i
		for j < len(text) && tokenChar(text[j]) {
			j++
		}
		if entropic(text[:i], text[i:j]) {
			return true
		}
		i = j
	}
	return false
}

// entropic judges one token; before is the text that precedes it.
func entropic(before, tok string) bool {
	if len(tok) < minEntropyLen {
		return false
	}
	for _, p := range integrityPrefixes {
		if strings.HasPrefix(tok, p) || strings.HasSuffix(before, p) {
			return false
		}
	}
	var upper, lower, digit bool
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; {
		case 'A' <= c && c <= 'Z':
			upper = true
		case 'a' <= c && c <= 'z':
			lower = true
		case '0' <= c && c <= '9':
			digit = true
		}
	}
	if !upper || !lower || !digit {
		return false
	}
	return shannon(tok) >= entropyThreshold(len(tok))
}
