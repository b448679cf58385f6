package credentials

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSetLoadUnset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg", "airlock", "credentials")
	if err := Set(path, "ANTHROPIC_API_KEY", "sk-ant-secret-1"); err != nil {
		t.Fatal(err)
	}
	if err := Set(path, "CLAUDE_CODE_OAUTH_TOKEN", "tok"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode = %v, want 0700", di.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil || got["ANTHROPIC_API_KEY"] != "sk-ant-secret-1" || got["CLAUDE_CODE_OAUTH_TOKEN"] != "tok" {
		t.Fatalf("Load = %v, %v", got, err)
	}
	if err := Unset(path, "CLAUDE_CODE_OAUTH_TOKEN"); err != nil {
		t.Fatal(err)
	}
	got, _ = Load(path)
	if _, ok := got["CLAUDE_CODE_OAUTH_TOKEN"]; ok || len(got) != 1 {
		t.Fatalf("after Unset: %v", got)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"world readable", "A=b\n", 0o644, "readable by other users"},
		{"bad line", "# ok\nA=b\nnot a pair\n", 0o600, "credentials:3: expected NAME=value"},
		{"bad name", "1A=b\n", 0o600, ":1: expected NAME=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "credentials")
			os.Remove(path)
			if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tt.mode)
			_, err := Load(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSetRejectsBadValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials")
	for _, v := range []string{"", "two\nlines"} {
		if err := Set(path, "ANTHROPIC_API_KEY", v); err == nil {
			t.Errorf("Set(%q) succeeded", v)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a rejected Set created the file")
	}
}

func TestResolveEnvironmentWins(t *testing.T) {
	env := map[string]string{"ANTHROPIC_API_KEY": "from-env"}
	lookup := func(n string) (string, bool) { v, ok := env[n]; return v, ok }
	file := map[string]string{"ANTHROPIC_API_KEY": "from-file", "CLAUDE_CODE_OAUTH_TOKEN": "tok"}
	got := Resolve([]string{"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "UNSET"}, lookup, file, "/f")
	if len(got) != 2 || got[0].Value != "from-env" || got[0].From != "environment" || got[1].From != "/f" {
		t.Fatalf("Resolve = %+v", got)
	}
	if Mask("sk-ant-api03-abcdefghijklmnop") != "sk-ant-…mnop" {
		t.Fatalf("Mask = %q", Mask("sk-ant-api03-abcdefghijklmnop"))
	}
}
