package config

import (
	"strings"
	"testing"
)

// A repository's own config may tighten secret scanning but not loosen it;
// the user's config may do either.
func TestProjectMayNotLoosenScanning(t *testing.T) {
	for _, tc := range []struct {
		toml  string
		loose bool
	}{
		{"[egress]\nscan = \"off\"\n", true},
		{"[egress]\nscan = \"log\"\n", true},
		{"[egress]\nscan_log = [\"x.test\"]\n", true},
		{"[egress]\nscan_off = [\"x.test\"]\n", true},
		{"[egress]\nscan_body_kib = 0\n", true},
		{"[egress]\nscan = \"block\"\n", false},
		{"[egress]\nscan_block = [\"x.test\"]\n", false},
		{"[egress]\nscan_body_kib = 1024\n", false},
		{"[egress]\nscan_off = []\n", false},
	} {
		dir := t.TempDir()
		path := write(t, dir, "repo/.airlock/config.toml", tc.toml)
		_, err := Loader{ProjectPath: path}.Load()
		if tc.loose && (err == nil || !strings.Contains(err.Error(), path+":2: egress.scan") ||
			!strings.Contains(err.Error(), "a repository's own config may make secret scanning stricter, not looser")) {
			t.Errorf("project %q: %v, want a refusal naming the line", tc.toml, err)
		}
		if !tc.loose && err != nil {
			t.Errorf("project %q: %v", tc.toml, err)
		}
		user := write(t, dir, "user/config.toml", tc.toml)
		if _, err := (Loader{UserPath: user}).Load(); err != nil {
			t.Errorf("user %q: %v", tc.toml, err)
		}
	}
}
