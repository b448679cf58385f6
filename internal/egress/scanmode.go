package egress

import (
	"fmt"
	"strings"
)

// ScanMode is what the proxy does with a secret-scan hit.
type ScanMode string

const (
	// ScanBlock refuses the request (HTTP 403). Default.
	ScanBlock ScanMode = "block"
	// ScanLog lets the request through and notes the hit (the rule and
	// where, never the text) in the audit record.
	ScanLog ScanMode = "log"
	// ScanOff skips the credential rules and entropy detection.
	ScanOff ScanMode = "off"
)

// In every mode, a secret airlock itself holds (the model credential) is
// refused: the user relaxed scanning for a host they trust with their own
// data, not handed it airlock's credential, which only ever goes to the
// model API through the proxy's own endpoint.

// ParseScanMode parses a mode name; "" is ScanBlock.
func ParseScanMode(s string) (ScanMode, error) {
	switch m := ScanMode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return ScanBlock, nil
	case ScanBlock, ScanLog, ScanOff:
		return m, nil
	}
	return "", fmt.Errorf("unknown scan mode %q: use block, log or off", s)
}

// ScanHostRule sets the scan mode for the hosts matching a pattern.
type ScanHostRule struct {
	Pattern string   `json:"pattern"` // as an allow rule's host: "internal.example.com", "*.example.com"
	Mode    ScanMode `json:"mode"`
}

// ParseScanHost checks a host pattern for a per-host scan mode: an allow
// rule's host pattern, without a port.
func ParseScanHost(pattern string) (string, error) {
	r, err := ParseRule(pattern, "")
	if err != nil {
		return "", err
	}
	if len(r.Ports) > 0 {
		return "", fmt.Errorf("%q: a scan host pattern takes no port; the mode applies to the host on every port", pattern)
	}
	return r.Pattern, nil
}

// ScanConfig is how the proxy scans requests.
type ScanConfig struct {
	// Mode is the default for every host; "" is ScanBlock.
	Mode ScanMode `json:"mode,omitempty"`
	// Hosts override Mode for matching hosts. The most specific pattern
	// wins (an exact name over a wildcard, a longer wildcard over a
	// shorter one); between equal patterns, the stricter mode.
	Hosts []ScanHostRule `json:"hosts,omitempty"`
	// BodyLimit is how many bytes of a plain-HTTP request body are
	// scanned; 0 scans none.
	BodyLimit int64 `json:"body_limit"`
}

// DefaultScanConfig blocks every hit and scans the first
// DefaultScanBodyKiB of bodies.
func DefaultScanConfig() ScanConfig {
	return ScanConfig{Mode: ScanBlock, BodyLimit: DefaultScanBodyKiB << 10}
}

// ScanConfig is the sidecar's scan configuration; without one, the
// default.
func (c SidecarConfig) ScanConfig() ScanConfig {
	if c.Scan == nil {
		return DefaultScanConfig()
	}
	return *c.Scan
}

// ModeFor returns the scan mode for a canonical host name.
func (c ScanConfig) ModeFor(host string) ScanMode {
	mode, best := c.Mode, -1
	if mode == "" {
		mode = ScanBlock
	}
	for _, h := range c.Hosts {
		if !(Rule{Pattern: h.Pattern}).matchHost(host) {
			continue
		}
		score := len(h.Pattern)
		if !strings.HasPrefix(h.Pattern, "*.") {
			score += 1 << 16
		}
		if score > best || score == best && strictness(h.Mode) > strictness(mode) {
			mode, best = h.Mode, score
		}
	}
	return mode
}

func strictness(m ScanMode) int {
	switch m {
	case ScanOff:
		return 0
	case ScanLog:
		return 1
	}
	return 2
}

// applyMode runs a scan under a host's mode: scan(heldOnly) scans and
// returns the first hit. It returns the hit to refuse the request for, and
// the hit to note and let through (ScanLog).
func applyMode(mode ScanMode, scan func(heldOnly bool) (*Hit, error)) (refuse, logged *Hit, err error) {
	switch mode {
	case ScanOff:
		refuse, err = scan(true)
		return refuse, nil, err
	case ScanLog:
		h, err := scan(false)
		if err != nil || h == nil || h.Held {
			return h, nil, err
		}
		// A held secret may come after the hit that is only logged.
		refuse, err = scan(true)
		return refuse, h, err
	}
	refuse, err = scan(false)
	return refuse, nil, err
}
