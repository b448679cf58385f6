package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// What a git directory written by the sandbox loses, and why. Each of these
// can make an ordinary git command on the host run a program the agent
// chose (config: core.fsmonitor, core.hooksPath, filter.*, diff.*.textconv,
// alias.*, core.pager, include.path; hooks; attributes naming filters and
// diff drivers) or make git read another repository on the host
// (commondir, worktrees, alternates).
var gitStrip = []struct{ name, reason string }{
	{"config", "git configuration written in the sandbox (replaced by a minimal one)"},
	{"config.worktree", "git configuration written in the sandbox"},
	{"hooks", "git hooks (programs git would run)"},
	{"info/attributes", "git attributes (they can name filters and diff drivers)"},
	{"commondir", "a link to another git directory"},
	{"worktrees", "links to other working trees"},
	{"objects/info/alternates", "a link to another object store"},
	{"objects/info/http-alternates", "a link to another object store"},
}

// sanitiseGit makes every git directory in the staged copy inert: a
// directory named .git, and any directory git itself would take for a
// repository (a bare one, or a submodule's in .git/modules). A .git file
// is kept only when it points (relatively) to such a directory in the
// copy; one pointing anywhere else is left out.
func sanitiseGit(x *extractor) error {
	var dirs, files []string // relative to the stage
	err := fs.WalkDir(x.root.FS(), x.stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == x.stage {
			return nil
		}
		rel := strings.TrimPrefix(p, x.stage+"/")
		switch {
		case d.IsDir() && (isDotGit(d.Name()) || x.isGitDir(p)):
			dirs = append(dirs, rel)
		case isDotGit(d.Name()) && d.Type().IsRegular():
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		return err
	}
	x.gitDirs = map[string]bool{}
	for _, g := range dirs {
		x.gitDirs[g] = true
	}
	for i, g := range dirs {
		if _, err := x.root.Lstat(x.staged(g)); errors.Is(err, fs.ErrNotExist) {
			continue // inside another's hooks or worktrees, already gone
		}
		bare := !isDotGit(path.Base(g))
		for _, outer := range dirs[:i] {
			bare = bare && !strings.HasPrefix(g, outer+"/")
		}
		if err := x.stripGitDir(g, bare); err != nil {
			return fmt.Errorf("%s: %w", x.orig(g), err)
		}
	}
	for _, f := range files {
		if err := x.checkGitFile(f); err != nil {
			return fmt.Errorf("%s: %w", x.orig(f), err)
		}
	}
	return nil
}

// isDotGit says whether name is ".git" on some filesystem the copy may be
// on: case-insensitive ones (macOS, Windows) and HFS+, which ignores the
// Unicode characters git itself ignores there (is_hfs_dotgit in git's
// utf8.c).
func isDotGit(name string) bool {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
			return -1
		}
		return r
	}, name)
	return strings.EqualFold(clean, ".git")
}

// orig is the stream's name for rel, a path in the copy.
func (x *extractor) orig(rel string) string {
	top, rest, _ := strings.Cut(rel, "/")
	if o, ok := x.tops[top]; ok {
		top = o
	}
	return path.Join(top, rest)
}

// isGitDir is git's own test (setup.c, is_git_directory): a HEAD, and
// either a commondir or objects and refs.
func (x *extractor) isGitDir(p string) bool {
	has := func(name string) bool {
		_, err := x.root.Lstat(path.Join(p, name))
		return err == nil
	}
	return has("HEAD") && (has("commondir") || has("objects") && has("refs"))
}

func (x *extractor) stripGitDir(g string, bare bool) error {
	format := objectFormat(x.root, x.staged(path.Join(g, "config")))
	for _, s := range gitStrip {
		p := x.staged(path.Join(g, s.name))
		if _, err := x.root.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return err
		}
		if err := x.root.RemoveAll(p); err != nil {
			return err
		}
		x.skip(x.orig(path.Join(g, s.name)), s.reason)
	}
	version, ext := 0, ""
	if format != "" {
		version, ext = 1, "[extensions]\n\tobjectformat = "+format+"\n"
	}
	cfg := fmt.Sprintf("[core]\n\trepositoryformatversion = %d\n\tfilemode = true\n\tbare = %t\n%s", version, bare, ext)
	f, err := x.root.OpenFile(x.staged(path.Join(g, "config")), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, cfg); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// objectFormat is the extensions.objectformat of the git config file at
// name when it is sha256, the one setting a repository cannot be read
// without; "" otherwise.
func objectFormat(root *os.Root, name string) string {
	f, err := root.Open(name)
	if err != nil {
		return ""
	}
	defer f.Close()
	section := ""
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		line := strings.ToLower(strings.TrimSpace(sc.Text()))
		if strings.HasPrefix(line, "[") {
			section = strings.TrimSpace(strings.Trim(line, "[]"))
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if ok && section == "extensions" && strings.TrimSpace(key) == "objectformat" && strings.TrimSpace(value) == "sha256" {
			return "sha256"
		}
	}
	return ""
}

// checkGitFile keeps the .git file f ("gitdir: PATH") only when PATH is
// relative and names a git directory of the copy (a submodule's checkout);
// otherwise git would use a repository outside the copy, with its config
// and hooks, so it is left out.
func (x *extractor) checkGitFile(f string) error {
	target := ""
	if file, err := x.root.Open(x.staged(f)); err == nil {
		data, _ := io.ReadAll(io.LimitReader(file, 4096))
		file.Close()
		line, _, _ := strings.Cut(string(data), "\n")
		target, _ = strings.CutPrefix(strings.TrimSpace(line), "gitdir: ")
	}
	if err := x.root.Remove(x.staged(f)); err != nil {
		return err
	}
	if target == "" || !insideTree(f, target) || !x.gitDirs[path.Join(path.Dir(f), target)] {
		x.skip(x.orig(f), "a .git file pointing to "+target+", not to a git directory in the copy")
		return nil
	}
	// Written anew, only the line git reads.
	out, err := x.root.OpenFile(x.staged(f), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(out, "gitdir: "+target+"\n"); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
