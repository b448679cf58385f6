package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/prompt"
)

func TestParseMount(t *testing.T) {
	home := func() (string, error) { return "/home/u", nil }
	tests := []struct {
		in     string
		want   Mount
		errHas string
	}{
		{in: "~/datasets:/data", want: Mount{"/home/u/datasets", "/data", true}},
		{in: "~/datasets:/data:ro", want: Mount{"/home/u/datasets", "/data", true}},
		{in: "/srv/x/:/x:rw", want: Mount{"/srv/x", "/x", false}},
		{in: "/srv/x:/x/", want: Mount{"/srv/x", "/x", true}},
		{in: "datasets:/data", errHas: "the source datasets is relative"},
		{in: "./d:/data", errHas: "is relative"},
		{in: "~bob/d:/data", errHas: "only ~/ is expanded"},
		{in: "/d:data", errHas: "the target must be an absolute path"},
		{in: "/d:", errHas: "the target must be an absolute path"},
		{in: ":/data", errHas: "the source is empty"},
		{in: "/d:/data:rwx", errHas: `the mode "rwx" is neither ro nor rw`},
		{in: "/d", errHas: "not two or three fields"},
		{in: "/a:/b:ro:x", errHas: "not two or three fields"},
		{in: "/d:/a/../airlock", errHas: "not a clean path"},
		{in: "/d:/data\n", errHas: "control characters"},
	}
	for _, tt := range tests {
		got, err := ParseMount(tt.in, home)
		switch {
		case tt.errHas != "":
			if err == nil || !strings.Contains(err.Error(), tt.errHas) || !strings.Contains(err.Error(), "SOURCE:TARGET") {
				t.Errorf("ParseMount(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.errHas)
			}
		case err != nil:
			t.Errorf("ParseMount(%q): %v", tt.in, err)
		case got != tt.want:
			t.Errorf("ParseMount(%q) = %+v, want %+v", tt.in, got, tt.want)
		default:
			if again, err := ParseMount(got.String(), home); err != nil || again != got {
				t.Errorf("ParseMount(%q) does not read back %q: %+v, %v", got.String(), tt.in, again, err)
			}
		}
	}
	if _, err := ParseMount("~/d:/data", func() (string, error) { return "", errors.New("no home") }); err == nil {
		t.Error("~/ without a home: no error")
	}
}

// Mounts add up across the system and user files; setup commands add up across files and the prompt, config first.
func TestMountsAndSetupAccumulate(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", "/home/u")
	sys := write(t, dir, "system.toml", "[sandbox]\nmounts = [\"/srv/a:/a\"]\nsetup = [\"make deps\"]\n")
	user := write(t, dir, "user.toml", "[sandbox]\nmounts = [\"~/d:/data:rw\"]\n")
	proj := write(t, dir, "repo/.airlock/config.toml", "[sandbox]\nsetup = [\"npm ci\"]\n")
	r, err := Loader{SystemPath: sys, UserPath: user, ProjectPath: proj}.Load()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/srv/a:/a", "~/d:/data:rw"}; !reflect.DeepEqual(r.Config.Sandbox.Mounts, want) {
		t.Errorf("mounts = %q, want %q", r.Config.Sandbox.Mounts, want)
	}
	p, err := prompt.Parse("task.md", []byte("---\nsetup: [\"go generate ./...\"]\n---\nDo it.\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ApplyPrompt(p); err != nil {
		t.Fatal(err)
	}
	if want := []string{"make deps", "npm ci", "go generate ./..."}; !reflect.DeepEqual(r.Config.Sandbox.Setup, want) {
		t.Errorf("setup = %q, want %q", r.Config.Sandbox.Setup, want)
	}
	if got := r.EntryFrom("sandbox.mounts", "~/d:/data:rw"); got != user+":2" {
		t.Errorf("the user's mount comes from %q, want %s:2", got, user)
	}
	if got := r.EntryFrom("sandbox.setup", "go generate ./..."); !strings.Contains(got, "task.md:2") {
		t.Errorf("the prompt's setup entry comes from %q, want the prompt's line", got)
	}

	bad := write(t, dir, "bad.toml", "[sandbox]\nsetup = [\"  \"]\nmounts = [\"rel:/x\"]\n")
	_, err = Loader{UserPath: bad}.Load()
	if err == nil || !strings.Contains(err.Error(), bad+":2: sandbox.setup: setup command") || !strings.Contains(err.Error(), bad+":3: sandbox.mounts: mount \"rel:/x\"") {
		t.Errorf("bad entries: %v", err)
	}
	os.Remove(filepath.Join(dir, "bad.toml"))
}
