package archive

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	safeConfig = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
	bareConfig = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n"
	evilConfig = "[core]\n\tfsmonitor = touch /tmp/MARK\n\thooksPath = /tmp\n[include]\n\tpath = /etc/gitconfig\n"
)

// Every git directory in a copy out of a sandbox comes out inert: its own
// config is replaced, and nothing is kept that git would run or follow out
// of the copy.
func TestExtractGitMetadata(t *testing.T) {
	gitdir := func(p string) []entry {
		return []entry{
			dir(p + "/"), file(p+"/HEAD", "ref: refs/heads/main\n"), file(p+"/config", evilConfig),
			dir(p + "/objects/"), dir(p + "/refs/"), dir(p + "/hooks/"), exe(p+"/hooks/post-checkout", "#!/bin/sh\ntouch /tmp/MARK\n"),
		}
	}
	tests := []struct {
		name    string
		entries []entry
		want    map[string]string // "" content: must exist (any content)
		absent  []string
		skipped []string
	}{
		{
			name: "top-level repository",
			entries: append(gitdir("top/.git"),
				file("top/.git/config.worktree", evilConfig),
				exe("top/.git/hooks/pre-commit", "#!/bin/sh\n"),
				file("top/.git/info/attributes", "* filter=evil\n"),
				file("top/.git/info/exclude", "*.o\n"),
				file("top/.git/commondir", "/home/user/repo/.git\n"),
				file("top/.git/worktrees/w/gitdir", "/home/user/w/.git\n"),
				file("top/.git/objects/info/alternates", "/home/user/repo/.git/objects\n"),
				file("top/.git/refs/heads/config", "0123\n"),
				file("top/.git/refs/heads/hooks/x", "4567\n"),
				file("top/.gitattributes", "* filter=evil\n"),
				exe("top/build.sh", "#!/bin/sh\n"),
			),
			want: map[string]string{
				"top/.git/config": safeConfig, "top/.git/HEAD": "ref: refs/heads/main\n", "top/.git/info/exclude": "*.o\n",
				"top/.git/refs/heads/config": "0123\n", "top/.git/refs/heads/hooks/x": "4567\n",
				"top/.gitattributes": "* filter=evil\n", "top/build.sh": "#!/bin/sh\n",
			},
			absent: []string{"top/.git/config.worktree", "top/.git/hooks/", "top/.git/info/attributes", "top/.git/commondir", "top/.git/worktrees/", "top/.git/objects/info/alternates"},
			skipped: []string{"top/.git/config", "top/.git/config.worktree", "top/.git/hooks", "top/.git/info/attributes",
				"top/.git/commondir", "top/.git/worktrees", "top/.git/objects/info/alternates"},
		},
		{
			name: "submodules, nested and bare repositories",
			entries: concat(
				gitdir("top/.git"), gitdir("top/.git/modules/sub"), gitdir("top/.git/modules/sub/modules/deeper"),
				gitdir("top/nested/.git"), gitdir("top/bare.git"),
				[]entry{
					file("top/sub/.git", "gitdir: ../.git/modules/sub\nextra\n"),
					file("top/sub/deeper/.git", "gitdir: ../../.git/modules/sub/modules/deeper"),
					file("top/other/.git", "gitdir: /home/user/repo/.git\n"),
					file("top/up/.git", "gitdir: ../../../home/user/repo/.git\n"),
					file("top/notgit/.git", "gitdir: ../build\n"),
					dir("top/build/"),
					symlink("top/linked/.git", "../.git"),
				},
			),
			want: map[string]string{
				"top/.git/config": safeConfig, "top/.git/modules/sub/config": safeConfig,
				"top/.git/modules/sub/modules/deeper/config": safeConfig, "top/nested/.git/config": safeConfig,
				"top/bare.git/config": bareConfig,
				"top/sub/.git":        "gitdir: ../.git/modules/sub\n",
				"top/sub/deeper/.git": "gitdir: ../../.git/modules/sub/modules/deeper\n",
			},
			absent: []string{"top/.git/hooks/", "top/.git/modules/sub/hooks/", "top/.git/modules/sub/modules/deeper/hooks/",
				"top/nested/.git/hooks/", "top/bare.git/hooks/", "top/other/.git", "top/up/.git", "top/notgit/.git", "top/linked/.git"},
			skipped: []string{"top/.git/modules/sub/hooks", "top/.git/modules/sub/modules/deeper/config", "top/nested/.git/hooks",
				"top/bare.git/config", "top/other/.git", "top/up/.git", "top/notgit/.git", "top/linked/.git"},
		},
		{
			name: ".git as a case-insensitive or HFS+ filesystem reads it",
			entries: concat(gitdir("top/.GIT"), gitdir("top/a/.g\u200cit"), []entry{
				file("top/b/.Git", "gitdir: /home/user/repo/.git\n"), symlink("top/c/.GIT", "../a"),
			}),
			want:    map[string]string{"top/.GIT/config": safeConfig, "top/a/.g\u200cit/config": safeConfig},
			absent:  []string{"top/.GIT/hooks/", "top/a/.g\u200cit/hooks/", "top/b/.Git", "top/c/.GIT"},
			skipped: []string{"top/.GIT/hooks", "top/b/.Git", "top/c/.GIT"},
		},
		{
			name: "config hard-linked to a file of the worktree",
			entries: []entry{
				dir("top/"), file("top/notes.txt", evilConfig), dir("top/.git/"), hardlink("top/.git/config", "top/notes.txt"),
				symlink("top/.git/info", "../evil"), file("top/evil/attributes", "* diff=evil\n"),
			},
			want:    map[string]string{"top/.git/config": safeConfig, "top/notes.txt": evilConfig},
			absent:  []string{"top/evil/attributes"},
			skipped: []string{"top/.git/config", "top/.git/info/attributes"},
		},
		{
			name: "a sha256 repository stays readable",
			entries: []entry{
				dir("top/"), dir("top/.git/"),
				file("top/.git/config", "[core]\n\trepositoryformatversion = 1\n\tfsmonitor = x\n[extensions]\n\tobjectFormat = sha256\n"),
			},
			want: map[string]string{"top/.git/config": "[core]\n\trepositoryformatversion = 1\n\tfilemode = true\n\tbare = false\n[extensions]\n\tobjectformat = sha256\n"},
		},
		{
			name:    "the copy is itself a git directory",
			entries: gitdir("workspace-git"),
			want:    map[string]string{"workspace-git/config": bareConfig},
			absent:  []string{"workspace-git/hooks/"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			skipped, err := Extract(tarOf(t, tt.entries...), dest, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := tree(t, dest)
			for name, content := range tt.want {
				if c, ok := got[name]; !ok || content != "" && c != content {
					t.Errorf("%s = %q (there: %v), want %q", name, c, ok, content)
				}
			}
			for _, name := range tt.absent {
				if _, ok := got[name]; ok {
					t.Errorf("%s was written", name)
				}
			}
			names := map[string]bool{}
			for _, s := range skipped {
				names[s.Name] = true
			}
			for _, name := range tt.skipped {
				if !names[name] {
					t.Errorf("%s not reported as left out; skipped = %v", name, skipped)
				}
			}
			for name, content := range got {
				if strings.Contains(content, "MARK") && !strings.HasSuffix(name, "notes.txt") {
					t.Errorf("%s still holds the sandbox's command: %q", name, content)
				}
			}
		})
	}
}

func concat(lists ...[]entry) []entry {
	var out []entry
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// A real repository, made hostile the way an agent would, comes out of a
// copy as a repository git can use, and no git command run in the copy
// runs anything the agent planted.
func TestExtractRealRepositoryIsInert(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	home := t.TempDir()
	marker := filepath.Join(t.TempDir(), "MARK")
	gitIn := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		// Only the repository's own configuration: none of the user's.
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	src := filepath.Join(t.TempDir(), "workspace")
	os.MkdirAll(src, 0o755)
	gitIn(src, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("one\n"), 0o644)
	os.WriteFile(filepath.Join(src, ".gitattributes"), []byte("*.txt filter=evil diff=evil\n"), 0o644)
	gitIn(src, "add", ".")
	gitIn(src, "commit", "-q", "-m", "first")
	gitIn(src, "branch", "other")
	// A submodule, whose git directory lives in .git/modules/sub.
	lib := filepath.Join(t.TempDir(), "lib")
	os.MkdirAll(lib, 0o755)
	gitIn(lib, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(lib, "lib.txt"), []byte("lib\n"), 0o644)
	gitIn(lib, "add", ".")
	gitIn(lib, "commit", "-q", "-m", "lib")
	gitIn(src, "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib, "sub")
	gitIn(src, "commit", "-q", "-m", "add sub")
	gitIn(filepath.Join(src, "sub"), "config", "core.fsmonitor", "touch "+marker)
	os.WriteFile(filepath.Join(src, "sub", "lib.txt"), []byte("changed\n"), 0o644)
	// What the agent plants: every way git runs a command from config, and
	// hooks.
	touch := "touch " + marker
	for _, kv := range [][2]string{
		{"core.fsmonitor", touch}, {"filter.evil.clean", touch}, {"filter.evil.smudge", touch},
		{"filter.evil.process", touch}, {"diff.evil.textconv", touch}, {"core.pager", touch},
		{"core.hooksPath", ".git/evilhooks"}, {"alias.status", "!" + touch},
	} {
		gitIn(src, "config", kv[0], kv[1])
	}
	for _, hook := range []string{"pre-commit", "post-checkout", "post-commit", "commit-msg", "prepare-commit-msg", "post-index-change", "reference-transaction"} {
		os.MkdirAll(filepath.Join(src, ".git", "hooks"), 0o755)
		os.WriteFile(filepath.Join(src, ".git", "hooks", hook), []byte("#!/bin/sh\n"+touch+"\n"), 0o755)
	}
	os.WriteFile(filepath.Join(src, ".git", "info", "attributes"), []byte("* filter=evil\n"), 0o644)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("two\n"), 0o644)
	os.Remove(marker) // the agent's own git commands above may have run it

	var buf bytes.Buffer
	if err := Create(&buf, src, "workspace", os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	skipped, err := Extract(&buf, dest, Options{Rename: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) < 3 {
		t.Errorf("skipped = %v, want config, hooks and attributes", skipped)
	}
	copyDir := filepath.Join(dest, "copy")
	gitIn(copyDir, "status")
	gitIn(copyDir, "diff")
	gitIn(copyDir, "log", "-p")
	gitIn(copyDir, "add", "-A")
	gitIn(copyDir, "commit", "-q", "-m", "second")
	gitIn(copyDir, "checkout", "-q", "other")
	gitIn(copyDir, "checkout", "-q", "main")
	subDir := filepath.Join(copyDir, "sub")
	gitIn(subDir, "status")
	gitIn(subDir, "diff")
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a git command in the copy ran the sandbox's command")
	}
	if got := gitIn(copyDir, "log", "--format=%s"); got != "second\nadd sub\nfirst\n" {
		t.Fatalf("log in the copy = %q", got)
	}
	if got := gitIn(subDir, "log", "--format=%s"); got != "lib\n" {
		t.Fatalf("log in the copy's submodule = %q", got)
	}
	if got := gitIn(subDir, "rev-parse", "--show-toplevel"); strings.TrimSpace(got) != subDir {
		t.Fatalf("the copy's submodule's work tree is %q, want %s", got, subDir)
	}
}

// Copying a workspace's .git into a repository of the user's (`cp
// RUN:/workspace/.git .`) would merge the sandbox's HEAD, refs and index
// into the user's .git: refused, and nothing at all is written.
func TestExtractGitDirIntoExistingOne(t *testing.T) {
	dest := t.TempDir()
	os.MkdirAll(filepath.Join(dest, ".git"), 0o755)
	os.WriteFile(filepath.Join(dest, ".git", "HEAD"), []byte("ref: refs/heads/mine\n"), 0o644)
	stream := concat([]entry{dir("./"), file("./a.txt", "agent")},
		[]entry{dir("./.git/"), file("./.git/HEAD", "ref: refs/heads/agent\n"), dir("./.git/objects/"), dir("./.git/refs/")})
	_, err := Extract(tarOf(t, stream...), dest, Options{})
	if err == nil || !strings.Contains(err.Error(), "git directory") {
		t.Fatalf("err = %v, want a refusal to merge git directories", err)
	}
	got := tree(t, dest)
	if len(got) != 2 || got[".git/HEAD"] != "ref: refs/heads/mine\n" {
		t.Fatalf("dest after a refused copy: %v", got)
	}
}
