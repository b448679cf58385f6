package e2e

import (
	"strings"
	"testing"
)

// proxy check answers what a run's proxy would decide, by which rule, from
// which source; bad policy input is one error naming the file and line.
func TestProxyCheckAndPolicyErrors(t *testing.T) {
	e := newEnv(t)
	e.write(".airlock/config.toml", "[egress]\nallow = [\"*.example.org\", \"registry.npmjs.org\"]\ndeny = [\"evil.example.org\"]\n")
	tests := []struct {
		args     []string
		wantCode int
		want     []string
	}{
		{[]string{"proxy", "check", "https://api.anthropic.com/v1/messages"}, 0, []string{"allowed", "built in for claude"}},
		{[]string{"proxy", "check", "https://example.org/x"}, 0, []string{"allowed", "*.example.org", ".airlock/config.toml:2"}},
		{[]string{"proxy", "check", "https://deep.sub.example.org/"}, 0, []string{"allowed"}},
		{[]string{"proxy", "check", "https://evil.example.org/"}, 1, []string{"denied"}},
		{[]string{"proxy", "check", "https://notexample.org/"}, 1, []string{"denied"}},
		{[]string{"proxy", "check", "https://registry.npmjs.org:8443/"}, 1, []string{"denied"}},
		{[]string{"proxy", "check", "https://github.com/"}, 1, []string{"denied"}},
		{[]string{"proxy", "check", "--allow", "github.com", "https://github.com/"}, 0, []string{"allowed", "flag --allow"}},
		{[]string{"proxy", "check", "--network", "open", "https://github.com/"}, 0, []string{"allowed", "open"}},
		{[]string{"proxy", "check", "--network", "open", "https://evil.example.org/"}, 1, []string{"denied"}},
		{[]string{"proxy", "check", "--allow", "*bad.com", "https://x.com/"}, 2, []string{"*bad.com"}},
		{[]string{"proxy", "check", "--network", "sideways", "https://x.com/"}, 2, []string{"sideways"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[2:], " "), func(t *testing.T) {
			res := e.airlock(tt.args...)
			out := res.stdout + res.stderr
			if res.code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", res.code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	bad := []struct{ config, want string }{
		{"[egress]\nallow = [\"ok.com\",\n  \"bad pattern.com\"]\n", "config.toml:2"},
		{"[egress]\nmode = \"wide-open\"\n", "config.toml:2"},
		{"[egress]\nallow_cidrs = [\"10.0.0.0/33\"]\n", "config.toml:2"},
		{"[egress]\nextra_hosts = [\"nocolon\"]\n", "config.toml:2"},
	}
	for _, b := range bad {
		e.write(".airlock/config.toml", b.config)
		res := e.airlock("run", "-m", "x", "-y")
		if res.code == 0 || !strings.Contains(res.stderr, b.want) {
			t.Errorf("config %q: exit %d, want an error naming %s:\n%s", b.config, res.code, b.want, res.stderr)
		}
	}
	e.write(".airlock/config.toml", "")
	e.write(".airlock/prompts/p.md", "---\nallow:\n  - good.com\n  - \"*\"\n---\nDo it.\n")
	if res := e.airlock("run", "p", "-y"); res.code == 0 || !strings.Contains(res.stderr, "p.md:4") {
		t.Errorf("bad prompt allow entry: exit %d: %s", res.code, res.stderr)
	}
	if runs := e.runs(); len(runs) != 0 {
		t.Errorf("bad policy input created runs: %d", len(runs))
	}
}
