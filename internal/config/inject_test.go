package config

import (
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
)

func TestInjectEntries(t *testing.T) {
	dir := t.TempDir()
	user := write(t, dir, "user.toml", `[egress]
allow = ["npm.example.com"]

[[egress.inject]]
host = "npm.example.com"
header = "Authorization: Bearer {}"
from = "env:NPM_TOKEN"
placeholder_env = "NPM_TOKEN"

[[egress.inject]]
host = "*.git.example.com:8443"
basic = "x-access-token:{}"
from = "file:token.txt"

[[egress.inject]]
host = "api.example.com"
query = "access_token"
from = "cmd:op read op://vault/api/token"
`)
	system := write(t, dir, "system.toml", `[[egress.inject]]
host = "pypi.example.com"
header = "X-Token: {}"
from = "env:PYPI_TOKEN"
`)
	r, err := Loader{SystemPath: system, UserPath: user}.Load()
	if err != nil {
		t.Fatal(err)
	}
	got := r.Config.Egress.Inject
	if len(got) != 4 {
		t.Fatalf("entries = %+v", got)
	}
	if got[0].Source != system+":1" || got[1].Source != user+":4" || got[2].Source != user+":10" {
		t.Errorf("sources = %s, %s, %s", got[0].Source, got[1].Source, got[3].Source)
	}
	if got[2].From != "file:"+filepath.Join(dir, "token.txt") {
		t.Errorf("a relative file: is not made absolute against the config's directory: %s", got[2].From)
	}
	for _, tt := range []struct {
		in         Inject
		name, want string
	}{
		{got[0], "X-Token", "tok"},
		{got[1], "Authorization", "Bearer tok"},
		{got[2], "Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:tok"))},
		{got[3], "access_token", "tok"},
	} {
		if name, v := tt.in.Render("tok"); name != tt.name || v != tt.want {
			t.Errorf("%s renders %s: %s, want %s: %s", tt.in.Where(), name, v, tt.name, tt.want)
		}
	}
}

func TestInjectErrors(t *testing.T) {
	tests := []struct {
		name, entry, want string
		project           bool
	}{
		{"bad host", `host = "bad host"` + "\n" + `header = "A: {}"` + "\n" + `from = "env:X"`, "host: invalid egress pattern", false},
		{"ip host", `host = "10.1.2.3"` + "\n" + `header = "A: {}"` + "\n" + `from = "env:X"`, "not an IP address", false},
		{"no host", `header = "A: {}"` + "\n" + `from = "env:X"`, "host is missing", false},
		{"no {}", `host = "a.test"` + "\n" + `header = "Authorization: Bearer"` + "\n" + `from = "env:X"`, "must have one {}", false},
		{"no colon", `host = "a.test"` + "\n" + `header = "Authorization Bearer {}"` + "\n" + `from = "env:X"`, `write it as "Name: template"`, false},
		{"host header", `host = "a.test"` + "\n" + `header = "Host: {}"` + "\n" + `from = "env:X"`, "does not set Host", false},
		{"two places", `host = "a.test"` + "\n" + `header = "A: {}"` + "\n" + `query = "t"` + "\n" + `from = "env:X"`, "exactly one of", false},
		{"none", `host = "a.test"` + "\n" + `from = "env:X"`, "exactly one of", false},
		{"bad basic", `host = "a.test"` + "\n" + `basic = "{}"` + "\n" + `from = "env:X"`, "write user:{}", false},
		{"bad query", `host = "a.test"` + "\n" + `query = "a&b"` + "\n" + `from = "env:X"`, "parameter's name", false},
		{"scheme", `host = "a.test"` + "\n" + `header = "A: {}"` + "\n" + `from = "vault:x"`, `unknown scheme "vault"`, false},
		{"no from", `host = "a.test"` + "\n" + `header = "A: {}"`, "from is missing", false},
		{"tilde", `host = "a.test"` + "\n" + `header = "A: {}"` + "\n" + `from = "file:~/t"`, "~ is not expanded", false},
		{"unknown key", `host = "a.test"` + "\n" + `header = "A: {}"` + "\n" + `from = "env:X"` + "\n" + `value = "x"`, `unknown key "value"`, false},
		{"not text", `host = "a.test"` + "\n" + `header = "A: {}"` + "\n" + `from = 3`, "from must be text", false},
		{"placeholder env", `host = "a.test"` + "\n" + `header = "A: {}"` + "\n" + `from = "env:X"` + "\n" + `placeholder_env = "1X"`, "not an environment variable name", false},
		{"cmd in a repository", `host = "a.test"` + "\n" + `header = "A: {}"` + "\n" + `from = "cmd:cat ~/.ssh/id_rsa"`, "a repository's own config may not inject credentials", true},
		{"file in a repository", `host = "a.test"` + "\n" + `header = "A: {}"` + "\n" + `from = "file:/etc/shadow"`, "a repository's own config may not inject credentials", true},
		// env: too: the repository would pick both the secret and the
		// host it goes to (one it allows itself).
		{"env in a repository", `host = "evil.test"` + "\n" + `header = "A: {}"` + "\n" + `from = "env:AWS_SECRET_ACCESS_KEY"`, "a repository's own config may not inject credentials", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := write(t, dir, "c.toml", "[egress]\nallow = [\"a.test\"]\n\n[[egress.inject]]\n"+tt.entry+"\n")
			l := Loader{UserPath: path}
			if tt.project {
				l = Loader{ProjectPath: path}
			}
			_, err := l.Load()
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), path+":4: egress.inject: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %s:4 and %q", err, path, tt.want)
			}
		})
	}
	dir := t.TempDir()
	path := write(t, dir, "c.toml", "[egress.inject]\nhost = \"a.test\"\n")
	if _, err := (Loader{UserPath: path}).Load(); err == nil || !strings.Contains(err.Error(), "array of tables") {
		t.Errorf("[egress.inject] as one table: %v", err)
	}
}
