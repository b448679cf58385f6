package egress

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseRule(t *testing.T) {
	good := []struct {
		in      string
		pattern string
		ports   []int
	}{
		{"api.example.com", "api.example.com", nil},
		{"API.Example.COM.", "api.example.com", nil},
		{"*.example.com", "*.example.com", nil},
		{"host.example.com:8443", "host.example.com", []int{8443}},
		{"*.example.org:443", "*.example.org", []int{443}},
		{"192.0.2.7", "192.0.2.7", nil},
		{"192.0.2.7:22", "192.0.2.7", []int{22}},
		{"2001:db8::1", "2001:db8::1", nil},
		{"[2001:db8::1]:443", "2001:db8::1", []int{443}},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", nil},
		{"_acme.example.com", "_acme.example.com", nil},
	}
	for _, tc := range good {
		r, err := ParseRule(tc.in, "test")
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tc.in, err)
			continue
		}
		if r.Pattern != tc.pattern || !slices.Equal(r.Ports, tc.ports) || r.Source != "test" {
			t.Errorf("ParseRule(%q) = %+v, want pattern %q ports %v", tc.in, r, tc.pattern, tc.ports)
		}
	}
	bad := []struct{ in, why string }{
		{"", "empty"},
		{"*foo.com", "wildcard"},
		{"a.*.com", "wildcard"},
		{"*", "wildcard"},
		{"*.com", "too broad"},
		{"a..com", "empty label"},
		{".example.com", "empty label"},
		{"exa mple.com", "space"},
		{" example.com", "space"},
		{"example.com%00", "%"},
		{"ex%2ecom", "%"},
		{"evil.com\x00.example.com", "control"},
		{"bücher.example", "non-ASCII"},
		{"example.com:0", "port"},
		{"example.com:65536", "port"},
		{"example.com:http", "port"},
		{"example.com:", "port"},
		{"[example.com]:443", "brackets"},
		{"*.192.0.2.7", "IP"},
		{"127.1", "numeric"},
		{"0x7f.0.0.1", "numeric"},
		{"2130706433", "numeric"},
		{"a/b.com", "contains"},
		{"user@example.com", "contains"},
		{strings.Repeat("a", 64) + ".com", "63"},
	}
	for _, tc := range bad {
		_, err := ParseRule(tc.in, "airlock.toml:7")
		if err == nil {
			t.Errorf("ParseRule(%q) succeeded, want error about %s", tc.in, tc.why)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "airlock.toml:7: ") || !strings.Contains(msg, tc.why) || !strings.Contains(msg, "*.example.com") {
			t.Errorf("ParseRule(%q) error %q: want source prefix, mention of %q and a hint", tc.in, msg, tc.why)
		}
	}
}

func TestParseModeAndCIDR(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAllowlist, "allowlist": ModeAllowlist, "Restricted": ModeRestricted, "open": ModeOpen} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("closed"); err == nil || !strings.Contains(err.Error(), "allowlist, restricted or open") {
		t.Errorf("ParseMode(closed) error = %v", err)
	}
	for in, want := range map[string]string{"10.1.2.3/16": "10.1.0.0/16", "192.0.2.7": "192.0.2.7/32", "fd00::/64": "fd00::/64", "::ffff:10.0.0.0/104": "10.0.0.0/8"} {
		if got, err := ParseCIDR(in, "x"); err != nil || got.String() != want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"10.0.0.0/33", "example.com", "", "fe80::1%eth0"} {
		if _, err := ParseCIDR(in, "airlock.toml:3"); err == nil || !strings.HasPrefix(err.Error(), "airlock.toml:3: ") {
			t.Errorf("ParseCIDR(%q) error = %v, want one naming the source", in, err)
		}
	}
}

func mustRules(t *testing.T, pats ...string) []Rule {
	t.Helper()
	var out []Rule
	for _, p := range pats {
		r, err := ParseRule(p, "test")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func TestDecide(t *testing.T) {
	base := Policy{
		Allow: mustRules(t, "api.example.com", "*.example.org", "alt.example.net:8443", "192.0.2.7"),
		Deny:  mustRules(t, "secret.example.org", "*.bad.example.org"),
	}
	restricted, open := base, base
	restricted.Mode, open.Mode = ModeRestricted, ModeOpen
	withCIDR := base
	withCIDR.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	cases := []struct {
		name string
		p    Policy
		host string
		port int
		want bool
	}{
		{"exact", base, "api.example.com", 443, true},
		{"exact port 80", base, "api.example.com", 80, true},
		{"exact other port", base, "api.example.com", 22, false},
		{"exact upper case and dot", base, "API.EXAMPLE.COM.", 443, true},
		{"not a subdomain of exact", base, "x.api.example.com", 443, false},
		{"suffix lookalike", base, "evilapi.example.com", 443, false},
		{"wildcard apex", base, "example.org", 443, true},
		{"wildcard subdomain", base, "a.b.example.org", 443, true},
		{"wildcard lookalike", base, "badexample.org", 443, false},
		{"explicit port", base, "alt.example.net", 8443, true},
		{"explicit port only", base, "alt.example.net", 443, false},
		{"deny beats allow", base, "secret.example.org", 443, false},
		{"deny every port", base, "secret.example.org", 8443, false},
		{"deny wildcard", base, "x.bad.example.org", 443, false},
		{"unlisted", base, "other.example.com", 443, false},
		{"NUL bypass", base, "attacker.com\x00.api.example.com", 443, false},
		{"percent bypass", base, "api%2eexample.com", 443, false},
		{"IP rule", base, "192.0.2.7", 443, true},
		{"IP mapped form", base, "::ffff:192.0.2.7", 443, true},
		{"IP unlisted", base, "192.0.2.8", 443, false},
		{"IP in allow_cidrs is no allow rule", withCIDR, "198.51.100.9", 5432, false},
		{"IP in allow_cidrs on a default port", withCIDR, "198.51.100.9", 443, false},
		{"IP rule other port", base, "192.0.2.7", 5432, false},
		{"restricted any name", restricted, "anything.example.net", 22, true},
		{"restricted deny", restricted, "secret.example.org", 443, false},
		{"restricted IP unlisted", restricted, "192.0.2.8", 443, false},
		{"open any", open, "anything.example.net", 22, true},
		{"open IP", open, "192.0.2.8", 443, true},
		{"open deny", open, "secret.example.org", 443, false},
		{"bad port", base, "api.example.com", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.p.Decide(tc.host, tc.port)
			if d.Allowed != tc.want {
				t.Fatalf("Decide(%q, %d) = %+v, want allowed=%v", tc.host, tc.port, d, tc.want)
			}
			if d.Reason == "" {
				t.Errorf("Decide(%q, %d) gave no reason", tc.host, tc.port)
			}
		})
	}
	if d := base.Decide("secret.example.org", 443); d.Rule != "secret.example.org" || !strings.Contains(d.Reason, "denied by rule") {
		t.Errorf("deny decision = %+v, want the deny rule named", d)
	}
	if d := base.Decide("a.example.org", 443); d.Rule != "*.example.org" {
		t.Errorf("allow decision = %+v, want rule *.example.org", d)
	}
}

func TestCheckAddr(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.255.0.1", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1",
		"239.255.255.250", "255.255.255.255", "240.0.0.1", "192.0.0.8", "198.18.0.1", "192.0.2.1",
		"::", "::1", "::127.0.0.1", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:db8::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "fe80::1%eth0",
	}
	public := []string{"8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"}
	var p Policy
	for _, s := range refused {
		if err := p.CheckAddr(netip.MustParseAddr(s)); err == nil {
			t.Errorf("CheckAddr(%s) = nil, want refusal", s)
		} else if !strings.Contains(err.Error(), "allow_cidrs") {
			t.Errorf("CheckAddr(%s) = %v, want a hint about allow_cidrs", s, err)
		}
	}
	for _, s := range public {
		if err := p.CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("CheckAddr(%s) = %v, want nil", s, err)
		}
	}
	p.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")}
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3"} {
		if err := p.CheckAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("with allow_cidrs, CheckAddr(%s) = %v", s, err)
		}
	}
	if err := p.CheckAddr(netip.MustParseAddr("10.2.0.1")); err == nil {
		t.Error("CheckAddr(10.2.0.1) outside allow_cidrs = nil")
	}
	if err := (Policy{Mode: ModeOpen}).CheckAddr(netip.MustParseAddr("169.254.169.254")); err != nil {
		t.Errorf("open mode CheckAddr = %v", err)
	}
}

func TestCanonical(t *testing.T) {
	good := map[string]string{
		"Example.COM":       "example.com",
		"example.com.":      "example.com",
		"[::1]":             "::1",
		"::FFFF:127.0.0.1":  "127.0.0.1",
		"2001:DB8::1":       "2001:db8::1",
		"xn--bcher-kva.com": "xn--bcher-kva.com",
	}
	for in, want := range good {
		if got, err := Canonical(in); err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "attacker.com\x00.allowed.com", "allowed.com\n", "a\tb.com", "api%2eexample.com",
		"example.com..", "bücher.com", "fe80::1%25eth0", "127.1", "0x7f000001", "a b.com", "exa\x7fmple.com",
	} {
		if got, err := Canonical(in); err == nil {
			t.Errorf("Canonical(%q) = %q, want error", in, got)
		}
	}
}

// allow_cidrs only exempts addresses from the special-address filter: the
// proxy's two stages together need an allow rule AND, for a special
// address, an exempting range.
func TestAllowCIDRsOnlyExempt(t *testing.T) {
	p := Policy{
		Allow:      mustRules(t, "db.internal:5432", "10.1.2.3:5432", "10.9.9.9:5432"),
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")},
	}
	tests := []struct {
		name        string
		host        string
		port        int
		addr        string // what the name resolves to, or the literal
		wantDecide  bool
		wantAddrErr string // "" means CheckAddr passes
	}{
		{"allowed name to an exempt private address", "db.internal", 5432, "10.1.7.7", true, ""},
		{"allowed name to a private address outside the range", "db.internal", 5432, "10.2.0.1", true, "private address"},
		{"allowed name on another port", "db.internal", 22, "10.1.7.7", false, ""},
		{"allowed IP literal in the range", "10.1.2.3", 5432, "10.1.2.3", true, ""},
		{"allowed IP literal, other port", "10.1.2.3", 22, "10.1.2.3", false, ""},
		{"unlisted IP literal in the range", "10.1.2.4", 5432, "10.1.2.4", false, ""},
		{"unlisted IP literal in the range, default port", "10.1.2.4", 443, "10.1.2.4", false, ""},
		{"allowed IP literal outside the range", "10.9.9.9", 5432, "10.9.9.9", true, "private address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.host, tt.port)
			if d.Allowed != tt.wantDecide {
				t.Fatalf("Decide(%s, %d) = %+v, want allowed=%v", tt.host, tt.port, d, tt.wantDecide)
			}
			err := p.CheckAddr(netip.MustParseAddr(tt.addr))
			switch {
			case tt.wantAddrErr == "" && err != nil:
				t.Errorf("CheckAddr(%s) = %v", tt.addr, err)
			case tt.wantAddrErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantAddrErr)):
				t.Errorf("CheckAddr(%s) = %v, want %q", tt.addr, err, tt.wantAddrErr)
			}
		})
	}
	if c, what, ok := p.Exemption(netip.MustParseAddr("10.1.2.3")); !ok || c.String() != "10.1.0.0/16" || !strings.Contains(what, "private") {
		t.Errorf("Exemption(10.1.2.3) = %v %q %v", c, what, ok)
	}
	if _, what, ok := p.Exemption(netip.MustParseAddr("10.2.0.1")); ok || what == "" {
		t.Errorf("Exemption(10.2.0.1) = %q %v, want special and not exempt", what, ok)
	}
	if _, what, ok := p.Exemption(netip.MustParseAddr("8.8.8.8")); ok || what != "" {
		t.Errorf("Exemption(8.8.8.8) = %q %v, want public", what, ok)
	}
}

func TestWideCIDR(t *testing.T) {
	tests := []struct {
		cidr string
		want string // "" means fine
	}{
		{"10.1.0.0/16", ""},
		{"192.168.1.7/32", ""},
		{"fd12:3456:789a::/48", ""},
		{"10.0.0.0/15", "wider than /16"},
		{"10.0.0.0/8", "wider than /16"},
		{"0.0.0.0/0", "169.254.169.254"},
		{"169.254.0.0/16", "169.254.169.254"},
		{"169.254.169.254/32", "169.254.169.254"},
		{"fd00:ec2::254/128", "fd00:ec2::254"},
		{"fd00::/8", "fd00:ec2::254"},
		{"fe80::/10", "wider than /48"},
		{"::/0", "fd00:ec2::254"},
		{"2001:db8::/32", "wider than /48"},
	}
	for _, tt := range tests {
		p, err := ParseCIDR(tt.cidr, "")
		if err != nil {
			t.Fatal(err)
		}
		got := WideCIDR(p)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("WideCIDR(%s) = %q, want %q", tt.cidr, got, tt.want)
		}
	}
}
