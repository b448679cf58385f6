// Package egress is airlock's egress proxy: the policy that decides which
// hosts an agent may reach, the secret scanner that inspects what it sends,
// the audit log of every decision, the proxy server itself and the relay that
// carries the sandbox's loopback ports to the proxy's Unix socket.
//
// The proxy intercepts TLS only to hosts with an injected credential
// (intercept.go). Inside any other allowed CONNECT tunnel it sees nothing,
// so uploads to an allowed host (a gist, an issue, a package publish)
// and domain fronting behind an allowed name remain possible; narrow
// allowlists and credential injection limit the damage.
package egress

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Mode is how much of the network a run may reach.
type Mode string

const (
	// ModeAllowlist lets through only hosts matching an allow rule. Default.
	ModeAllowlist Mode = "allowlist"
	// ModeRestricted lets through any host name that resolves to a public
	// address; private, loopback, link-local and similar addresses stay
	// refused.
	ModeRestricted Mode = "restricted"
	// ModeOpen lets everything through. Every connection is still logged.
	ModeOpen Mode = "open"
)

// ParseMode parses a mode name; the empty string is ModeAllowlist.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return ModeAllowlist, nil
	case ModeAllowlist, ModeRestricted, ModeOpen:
		return m, nil
	}
	return "", fmt.Errorf("unknown network mode %q: use allowlist, restricted or open", s)
}

// defaultPorts are the ports an allow rule without an explicit port covers.
func defaultPorts() []int { return []int{443, 80} }

// Rule is one allow or deny pattern.
type Rule struct {
	// Pattern is a canonical host name ("api.example.com"), a wildcard
	// ("*.example.com", which matches example.com itself AND every name
	// below it) or an IP address literal ("192.0.2.7", "2001:db8::1").
	Pattern string
	// Ports is the explicit port list. Nil means the default ports 443 and
	// 80 for an allow rule and every port for a deny rule, so that denying a
	// host cannot be sidestepped by an unusual port.
	Ports []int
	// Source says where the rule came from ("airlock.toml:12", "--allow"),
	// for messages and the audit log.
	Source string
}

// String is the pattern with its port when one was given.
func (r Rule) String() string {
	if len(r.Ports) == 0 {
		return r.Pattern
	}
	ports := make([]string, len(r.Ports))
	for i, p := range r.Ports {
		ports[i] = strconv.Itoa(p)
	}
	host := r.Pattern
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strings.Join(ports, ",")
}

// matchHost reports whether the canonical host matches the pattern.
func (r Rule) matchHost(host string) bool {
	if suffix, ok := strings.CutPrefix(r.Pattern, "*."); ok {
		return host == suffix || strings.HasSuffix(host, "."+suffix)
	}
	return host == r.Pattern
}

func (r Rule) matchPort(port int, deny bool) bool {
	if len(r.Ports) == 0 {
		if deny {
			return true
		}
		return slices.Contains(defaultPorts(), port)
	}
	return slices.Contains(r.Ports, port)
}

// isIP reports whether the rule names an IP address literal.
func (r Rule) isIP() bool {
	_, err := netip.ParseAddr(r.Pattern)
	return err == nil
}

const patternHelp = "use a host name (api.example.com), a wildcard (*.example.com) or an IP address, optionally with :port"

// ParseRule parses an allow or deny pattern: "api.example.com",
// "*.example.com" (the apex example.com and every subdomain),
// "host:8443", "192.0.2.7", "[2001:db8::1]:443". source names where the
// pattern came from and prefixes error messages.
func ParseRule(s, source string) (Rule, error) {
	fail := func(why string) (Rule, error) {
		return Rule{}, fmt.Errorf("%sinvalid egress pattern %q: %s; %s", where(source), s, why, patternHelp)
	}
	if s == "" {
		return fail("empty pattern")
	}
	if i := strings.IndexFunc(s, func(c rune) bool { return c <= ' ' || c >= 0x7f }); i >= 0 {
		return fail("contains a space, control or non-ASCII character (write international names as punycode, xn--...)")
	}
	host, portStr := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return fail("missing ]")
		}
		host, portStr = s[1:end], s[end+1:]
		if portStr != "" {
			var ok bool
			if portStr, ok = strings.CutPrefix(portStr, ":"); !ok {
				return fail("unexpected text after ]")
			}
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return fail("brackets are only for IPv6 addresses")
		}
	case strings.Count(s, ":") == 1:
		host, portStr, _ = strings.Cut(s, ":")
	}
	r := Rule{Source: source}
	if portStr != "" || strings.HasSuffix(s, ":") {
		p, err := parsePort(portStr)
		if err != nil {
			return fail(err.Error())
		}
		r.Ports = []int{p}
	}
	wild := false
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		wild, host = true, rest
	}
	if strings.Contains(host, "*") {
		return fail("a wildcard is only allowed as the whole first label, as in *.example.com")
	}
	canon, err := Canonical(host)
	if err != nil {
		return fail(err.Error())
	}
	if wild {
		if _, err := netip.ParseAddr(canon); err == nil {
			return fail("a wildcard cannot apply to an IP address")
		}
		if !strings.Contains(canon, ".") {
			return fail("a wildcard over a whole top-level domain is too broad (use --network restricted instead)")
		}
		canon = "*." + canon
	}
	r.Pattern = canon
	return r, nil
}

// where prefixes an error message with its source, if known.
func where(source string) string {
	if source == "" {
		return ""
	}
	return source + ": "
}

// from suffixes a reason with a rule's source, if known.
func from(source string) string {
	if source == "" {
		return ""
	}
	return " (" + source + ")"
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

// ParseCIDR parses an address range for Policy.AllowCIDRs ("10.1.0.0/16");
// a bare address is a single-address range. source prefixes error messages.
func ParseCIDR(s, source string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%sinvalid address range %q: use CIDR notation such as 10.1.0.0/16 or fd00::/64", where(source), s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%sinvalid address range %q: use CIDR notation such as 10.1.0.0/16 or fd00::/64", where(source), s)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Canonical returns the form of a host name that policy matches on:
// lower case, one trailing dot removed, IP literals in their standard form
// (IPv4-mapped IPv6 unmapped). It refuses control characters, NUL, '%'
// (percent-encoding and IPv6 zones), non-ASCII (use punycode), empty or
// over-long labels, characters outside letters, digits, '-' and '_', and
// numeric names that are not a standard dotted IPv4 address ("127.1",
// "0x7f.0.0.1", "2130706433"), which resolvers would turn into addresses.
// Matching only canonical names closes bypasses like
// "attacker.com\x00.allowed.com".
func Canonical(host string) (string, error) {
	if host == "" {
		return "", fmt.Errorf("empty host name")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == 0:
			return "", fmt.Errorf("host name contains a NUL byte")
		case c < ' ' || c == 0x7f:
			return "", fmt.Errorf("host name contains a control character")
		case c >= 0x80:
			return "", fmt.Errorf("host name contains non-ASCII characters (write international names as punycode, xn--...)")
		case c == '%':
			return "", fmt.Errorf("host name contains '%%' (percent-encoding and IPv6 zones are not accepted)")
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String(), nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if len(h) > 253 {
		return "", fmt.Errorf("host name longer than 253 characters")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" {
			return "", fmt.Errorf("host name has an empty label")
		}
		if len(l) > 63 {
			return "", fmt.Errorf("host name label longer than 63 characters")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("host name contains %q", c)
			}
		}
	}
	if numericLabel(labels[len(labels)-1]) {
		return "", fmt.Errorf("numeric host name is not a standard IPv4 address")
	}
	return h, nil
}

// numericLabel reports whether a label is a decimal, octal or hex number:
// no top-level domain is, but inet_aton-style address forms end in one.
func numericLabel(l string) bool {
	if rest, ok := strings.CutPrefix(l, "0x"); ok {
		l = rest
		if l == "" {
			return true
		}
		for i := 0; i < len(l); i++ {
			if !strings.ContainsRune("0123456789abcdef", rune(l[i])) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// Policy decides which destinations a run may reach.
type Policy struct {
	Mode  Mode
	Allow []Rule
	Deny  []Rule
	// AllowCIDRs are address ranges exempt from the special-address filter
	// (CheckAddr), and nothing more: they let an allowed name resolve to, or
	// an allowed IP literal be, a private or special address in the range.
	// They never allow a destination by themselves.
	AllowCIDRs []netip.Prefix
}

// Decision is the outcome of a policy check.
type Decision struct {
	Allowed bool
	Rule    string // the matching rule, if any
	Reason  string // why, in words fit for a 403 body and the audit log
}

// Decide is the name stage, before any DNS lookup: deny rules beat allow
// rules; in allowlist mode the host must match an allow rule; in restricted
// and open mode any host not denied passes this stage. An IP literal must
// be named by an allow rule (with its port), except in open mode; the
// address stage (CheckAddr) then still refuses a special address unless
// AllowCIDRs exempts it.
func (p Policy) Decide(host string, port int) Decision {
	h, err := Canonical(host)
	if err != nil {
		return Decision{Reason: "invalid host: " + err.Error()}
	}
	if port < 1 || port > 65535 {
		return Decision{Reason: fmt.Sprintf("invalid port %d", port)}
	}
	for _, r := range p.Deny {
		if r.matchHost(h) && r.matchPort(port, true) {
			return Decision{Rule: r.String(), Reason: "denied by rule " + r.String() + from(r.Source)}
		}
	}
	for _, r := range p.Allow {
		if r.matchHost(h) && r.matchPort(port, false) {
			return Decision{Allowed: true, Rule: r.String(), Reason: "allowed by rule " + r.String() + from(r.Source)}
		}
	}
	mode := p.Mode
	if mode == "" {
		mode = ModeAllowlist
	}
	if _, err := netip.ParseAddr(h); err == nil && mode != ModeOpen {
		return Decision{Reason: fmt.Sprintf("IP address %s is not an allow rule (on port %d)", h, port)}
	}
	switch mode {
	case ModeRestricted:
		return Decision{Allowed: true, Reason: "restricted mode"}
	case ModeOpen:
		return Decision{Allowed: true, Reason: "open mode"}
	}
	return Decision{Reason: fmt.Sprintf("%s is not in the allowlist", net.JoinHostPort(h, strconv.Itoa(port)))}
}

type specialRange struct {
	prefix netip.Prefix
	what   string
}

// specialRanges are the addresses a proxy must never dial on an agent's
// behalf unless the operator lists them: the host itself, its networks,
// cloud metadata services and addresses that are not unicast internet.
func specialRanges() []specialRange {
	list := []struct{ cidr, what string }{
		{"0.0.0.0/8", "an unspecified (this-network) address"},
		{"10.0.0.0/8", "a private address"},
		{"100.64.0.0/10", "a carrier-grade NAT address"},
		{"127.0.0.0/8", "a loopback address"},
		{"169.254.0.0/16", "a link-local address (cloud metadata lives here)"},
		{"172.16.0.0/12", "a private address"},
		{"192.0.0.0/24", "an IETF protocol address"},
		{"192.0.2.0/24", "a documentation address"},
		{"192.88.99.0/24", "a 6to4 relay address"},
		{"192.168.0.0/16", "a private address"},
		{"198.18.0.0/15", "a benchmarking address"},
		{"198.51.100.0/24", "a documentation address"},
		{"203.0.113.0/24", "a documentation address"},
		{"224.0.0.0/4", "a multicast address"},
		{"240.0.0.0/4", "a reserved or broadcast address"},
		{"::/128", "an unspecified address"},
		{"::1/128", "a loopback address"},
		{"::/96", "an IPv4-compatible address"},
		{"64:ff9b::/96", "a NAT64 address"},
		{"64:ff9b:1::/48", "a NAT64 address"},
		{"100::/64", "a discard address"},
		{"2001::/23", "an IETF protocol address"},
		{"2001:db8::/32", "a documentation address"},
		{"2002::/16", "a 6to4 address"},
		{"fc00::/7", "a unique-local (private) address"},
		{"fe80::/10", "a link-local address"},
		{"fec0::/10", "a site-local address"},
		{"ff00::/8", "a multicast address"},
	}
	out := make([]specialRange, len(list))
	for i, e := range list {
		out[i] = specialRange{netip.MustParsePrefix(e.cidr), e.what}
	}
	return out
}

// Exemption returns the AllowCIDRs range that exempts addr from the
// special-address filter, if addr is special and one does; what names
// the special range addr is in ("" for a public address).
func (p Policy) Exemption(addr netip.Addr) (cidr netip.Prefix, what string, exempt bool) {
	addr = addr.WithZone("").Unmap()
	for _, r := range specialRanges() {
		if r.prefix.Contains(addr) {
			what = r.what + " (" + r.prefix.String() + ")"
			break
		}
	}
	if what == "" {
		return netip.Prefix{}, "", false
	}
	for _, c := range p.AllowCIDRs {
		if c.Contains(addr) {
			return c, what, true
		}
	}
	return netip.Prefix{}, what, false
}

// metadataAddrs are cloud metadata services: no address range that covers
// one is accepted without confirmation.
var metadataAddrs = []string{"169.254.169.254", "fd00:ec2::254"}

// WideCIDR says why an allow_cidrs range needs confirming ([egress]
// allow_wide_cidrs = true), or "": wider than /16 for IPv4 or /48 for
// IPv6, or covering a cloud metadata address.
func WideCIDR(p netip.Prefix) string {
	for _, m := range metadataAddrs {
		if p.Contains(netip.MustParseAddr(m)) {
			return fmt.Sprintf("%s covers the cloud metadata address %s", p, m)
		}
	}
	if p.Addr().Is4() && p.Bits() < 16 {
		return fmt.Sprintf("%s is wider than /16", p)
	}
	if p.Addr().Is6() && p.Bits() < 48 {
		return fmt.Sprintf("%s is wider than /48", p)
	}
	return ""
}

// CheckAddr is the address stage, after DNS and again on the socket about to
// connect: it refuses loopback, private, link-local, CGNAT, multicast,
// unspecified, broadcast, reserved, documentation, NAT64 and 6to4 addresses
// (IPv4-mapped IPv6 is unmapped first) unless AllowCIDRs contains the
// address. Open mode allows every address.
func (p Policy) CheckAddr(addr netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("invalid address")
	}
	addr = addr.WithZone("").Unmap()
	for _, c := range p.AllowCIDRs {
		if c.Contains(addr) {
			return nil
		}
	}
	if p.Mode == ModeOpen {
		return nil
	}
	for _, r := range specialRanges() {
		if r.prefix.Contains(addr) {
			return fmt.Errorf("address %s is %s (%s); list it in [egress] allow_cidrs to allow it", addr, r.what, r.prefix)
		}
	}
	return nil
}
