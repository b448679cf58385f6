package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A nesting instance maps the agent's ids onto the host's, which incusd
// may do only for ids /etc/subuid and /etc/subgid give root; without them
// Create says which line to add, before Incus fails obscurely at start.
func TestCheckIncusRawIdmap(t *testing.T) {
	for _, tc := range []struct {
		name, subuid, subgid string
		uid, gid             int
		err                  string
	}{
		{"both given", "root:1000000:1000000000\nroot:1000:1\n", "root:1000:1\n", 1000, 1000, ""},
		{"in a range", "root:500:1000\n", "0:900:200\n", 1000, 1000, ""},
		{"other ids", "root:1000:1\n", "root:1000:1\n", 1001, 1002, "add `root:1001:1` to"},
		{"another user's", "alice:1000:1\n", "alice:1000:1\n", 1000, 1000, "/etc/subuid"},
		{"gid missing", "root:1000:1\n", "root:1000000:100\n", 1000, 1000, "subgid does not"},
		{"no files", "", "", 1000, 1000, "add `root:1000:1`"},
		{"root agent", "root:0:1\n", "root:0:1\n", 0, 0, "non-root"},
		{"garbage", "root:x:y\nroot:1000\n", "root:1000:1\n", 1000, 1000, "subuid does not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			su, sg := filepath.Join(dir, "subuid"), filepath.Join(dir, "subgid")
			if tc.subuid != "" {
				os.WriteFile(su, []byte(tc.subuid), 0o644)
				os.WriteFile(sg, []byte(tc.subgid), 0o644)
			}
			err := checkIncusRawIdmap(tc.uid, tc.gid, su, sg)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("err %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err %v, want one containing %q", err, tc.err)
			}
		})
	}
}
