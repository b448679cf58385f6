package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

func TestCheckMount(t *testing.T) {
	root := t.TempDir()
	root, _ = filepath.EvalSymlinks(root)
	home := filepath.Join(root, "home", "u")
	mk := func(rel string) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(target, rel string) string {
		p := filepath.Join(root, rel)
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	repo := mk("home/u/src/repo")
	mk("home/u/src/repo/.git")
	mk("home/u/src/repo/data")
	worktreeGit := mk("srv/repo.git") // a linked worktree's common dir, elsewhere
	data := mk("home/u/datasets")
	mk("home/u/.config/airlock")
	state := mk("home/u/.local/state/airlock")
	engine := mk("run/docker")
	mk("srv/ok")
	os.WriteFile(filepath.Join(root, "srv/ok/file.txt"), nil, 0o644)
	link(repo, "home/u/repo-link")
	link(home, "srv/home-link")
	link(data, "srv/data-link")
	mk("home/u/.local/state/airlock/runs")
	link(filepath.Join(state, "runs"), "srv/state-link")
	rules := MountRules{
		Project:       repo,
		GitDirs:       []string{filepath.Join(repo, ".git"), worktreeGit},
		Home:          home,
		Credentials:   filepath.Join(home, ".config/airlock/credentials"), // not written yet
		State:         state,
		EngineSockets: []string{engine},
	}
	tests := []struct {
		entry  string
		want   sandbox.Mount
		errHas string
	}{
		{entry: "~/datasets:/data", want: sandbox.Mount{Source: data, Target: "/data", ReadOnly: true}},
		{entry: root + "/srv/ok:/x:rw", want: sandbox.Mount{Source: root + "/srv/ok", Target: "/x"}},
		{entry: root + "/srv/ok/file.txt:/opt/f.txt", want: sandbox.Mount{Source: root + "/srv/ok/file.txt", Target: "/opt/f.txt", ReadOnly: true}},
		// A link is mounted as what it leads to.
		{entry: root + "/srv/data-link:/data", want: sandbox.Mount{Source: data, Target: "/data", ReadOnly: true}},

		{entry: "datasets:/data", errHas: "is relative"},
		{entry: "~/missing:/data", errHas: home + "/missing does not exist"},
		{entry: "/:/host", errHas: "the host's root directory"},
		{entry: "~/:/h", errHas: "is your home directory"},
		{entry: root + "/home:/h", errHas: "contains your home directory"},
		{entry: root + "/srv/home-link:/h", errHas: "is your home directory (" + root + "/srv/home-link leads to " + home + ")"},
		{entry: repo + ":/src", errHas: "is or contains the repository"},
		{entry: "~/src:/src", errHas: "is or contains the repository"},
		{entry: "~/repo-link:/src:ro", errHas: "is or contains the repository " + repo + " (" + home + "/repo-link leads to " + repo + ")"},
		{entry: repo + "/data:/data", errHas: "lies in the repository"},
		{entry: repo + "/.git:/g", errHas: "lies in the repository"},
		{entry: worktreeGit + ":/g", errHas: "the repository's git directory " + worktreeGit},
		{entry: root + "/srv:/srv", errHas: "holds or lies in the repository's git directory"},
		{entry: "~/.config:/c", errHas: "contains airlock's credentials file"},
		{entry: "~/.config/airlock:/c", errHas: "contains airlock's credentials file"},
		{entry: "~/.local:/l", errHas: "airlock's state directory"},
		{entry: root + "/srv/state-link:/l", errHas: "airlock's state directory"},
		{entry: engine + ":/d", errHas: "container engine"},
		{entry: "~/datasets:/", errHas: "the target / would cover the whole sandbox"},
		{entry: "~/datasets:/workspace", errHas: "the target /workspace lies in /workspace"},
		{entry: "~/datasets:/workspace/data", errHas: "lies in /workspace"},
		{entry: "~/datasets:/home/agent/.claude", errHas: "lies in /home/agent"},
		{entry: "~/datasets:/home", errHas: "would cover /home/agent"},
		{entry: "~/datasets:/airlock/bin", errHas: "lies in /airlock"},
		{entry: "~/datasets:/etc", errHas: "would cover /etc/passwd"},
		{entry: "~/datasets:/tmp/x", errHas: "lies in /tmp"},
	}
	for _, tt := range tests {
		got, err := CheckMount(tt.entry, rules)
		switch {
		case tt.errHas != "":
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("CheckMount(%q) = %+v, %v; want an error with %q", tt.entry, got, err, tt.errHas)
			} else if !strings.Contains(err.Error(), tt.entry) {
				t.Errorf("CheckMount(%q): the error does not name the entry: %v", tt.entry, err)
			}
		case err != nil:
			t.Errorf("CheckMount(%q): %v", tt.entry, err)
		case got != tt.want:
			t.Errorf("CheckMount(%q) = %+v, want %+v", tt.entry, got, tt.want)
		}
	}
}
