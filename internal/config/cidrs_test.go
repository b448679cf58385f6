package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// An allow_cidrs range wide enough to open a whole private network, or the
// cloud metadata service, is refused at load unless confirmed; the error
// names the key and where the range was written.
func TestWideCIDRsRefused(t *testing.T) {
	tests := []struct {
		name    string
		project string
		user    string
		wantErr string // "" means the load succeeds
	}{
		{"a /16 is fine", `allow_cidrs = ["10.1.0.0/16"]`, "", ""},
		{"one address is fine", `allow_cidrs = ["10.1.2.3"]`, "", ""},
		{"a /48 is fine", `allow_cidrs = ["fd12:3456:789a::/48"]`, "", ""},
		{"wider than /16", `allow_cidrs = ["10.0.0.0/8"]`, "", "10.0.0.0/8 is wider than /16"},
		{"everything", `allow_cidrs = ["0.0.0.0/0"]`, "", "0.0.0.0/0 covers the cloud metadata address 169.254.169.254"},
		{"IPv4-mapped everything", `allow_cidrs = ["::ffff:0.0.0.0/96"]`, "", "0.0.0.0/0 covers the cloud metadata address"},
		{"metadata range", `allow_cidrs = ["169.254.0.0/16"]`, "", "covers the cloud metadata address 169.254.169.254"},
		{"metadata address", `allow_cidrs = ["169.254.169.254"]`, "", "covers the cloud metadata address 169.254.169.254"},
		{"wider than /48", `allow_cidrs = ["fe80::/10"]`, "", "fe80::/10 is wider than /48"},
		{"private IPv6 and metadata", `allow_cidrs = ["fc00::/7"]`, "", "fc00::/7 covers the cloud metadata address fd00:ec2::254"},
		{"EC2 IPv6 metadata", `allow_cidrs = ["fd00:ec2::/64"]`, "", "covers the cloud metadata address fd00:ec2::254"},
		{"confirmed in the same file", "allow_cidrs = [\"10.0.0.0/8\"]\nallow_wide_cidrs = true", "", ""},
		{"confirmed in another layer", `allow_cidrs = ["10.0.0.0/8"]`, "[egress]\nallow_wide_cidrs = true\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			project := write(t, dir, "project.toml", "[egress]\n"+tt.project+"\n")
			l := Loader{ProjectPath: project}
			if tt.user != "" {
				l.UserPath = write(t, dir, "user.toml", tt.user)
			}
			r, err := l.Load()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if len(r.Config.Egress.AllowCIDRs) != 1 {
					t.Errorf("allow_cidrs = %v", r.Config.Egress.AllowCIDRs)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load accepted %s", tt.project)
			}
			msg := err.Error()
			for _, want := range []string{project + ":2", "egress.allow_cidrs", tt.wantErr, "allow_wide_cidrs = true"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q lacks %q", msg, want)
				}
			}
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("want one line, got %q", msg)
			}
		})
	}
	if _, err := (Loader{ProjectPath: filepath.Join(t.TempDir(), "none.toml")}).Load(); err != nil {
		t.Errorf("no file: %v", err)
	}
}
