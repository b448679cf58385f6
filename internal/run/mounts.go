package run

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// MountRules are the host paths a run's own mounts (sandbox.mounts) must
// keep clear of: what the sandbox is kept from by design. A user who
// mounts a directory gives the agent that directory, not these.
type MountRules struct {
	Project string   // the repository's root: the agent works on a copy
	GitDirs []string // its git directory and common directory
	Home    string   // the user's home directory
	// Credentials is airlock's credentials file, and State its state
	// directory (every run's files, the caches).
	Credentials   string
	State         string
	EngineSockets []string
}

// reservedTargets are the container paths airlock itself mounts or
// relies on: a user's mount may neither cover nor lie in them.
var reservedTargets = []string{
	containerWorkspace, containerHome, "/airlock", "/tmp",
	"/etc/passwd", "/etc/group", "/proc", "/sys", "/dev",
}

// CheckMount resolves one sandbox.mounts entry into the mount a run makes:
// its source with every link followed (the engine mounts what the path is
// now, not what a link may later say), refused with the reason when it
// would give the sandbox something it must not have.
func CheckMount(entry string, rules MountRules) (sandbox.Mount, error) {
	m, err := config.ParseMount(entry, func() (string, error) {
		if rules.Home == "" {
			return "", errors.New("~/ cannot be expanded: no home directory")
		}
		return rules.Home, nil
	})
	if err != nil {
		return sandbox.Mount{}, err
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("mount %q refused: %s", entry, fmt.Sprintf(format, args...))
	}
	src, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return sandbox.Mount{}, refuse("%s does not exist", m.Source)
		}
		return sandbox.Mount{}, refuse("%v", err)
	}
	via := ""
	if src != m.Source {
		via = " (" + m.Source + " leads to " + src + ")"
	}
	if m.Target == "/" {
		return sandbox.Mount{}, refuse("the target / would cover the whole sandbox")
	}
	for _, t := range reservedTargets {
		switch {
		case within(t, m.Target):
			return sandbox.Mount{}, refuse("the target %s lies in %s, which airlock itself provides; choose another place, such as /data", m.Target, t)
		case within(m.Target, t):
			return sandbox.Mount{}, refuse("the target %s would cover %s, which airlock itself provides; choose another place, such as /data", m.Target, t)
		}
	}
	if src == "/" {
		return sandbox.Mount{}, refuse("%s is the host's root directory%s", m.Source, via)
	}
	if home := realPath(rules.Home); home != "" && within(src, home) {
		what := "is your home directory"
		if src != home {
			what = "contains your home directory"
		}
		return sandbox.Mount{}, refuse("%s %s%s; mount the directory the agent needs, such as ~/datasets", m.Source, what, via)
	}
	if p := realPath(rules.Project); p != "" {
		switch {
		case within(src, p):
			return sandbox.Mount{}, refuse("%s is or contains the repository %s%s: the agent works on its own copy, in /workspace", m.Source, rules.Project, via)
		case within(p, src):
			return sandbox.Mount{}, refuse("%s lies in the repository %s%s: the agent works on its own copy, in /workspace, and the live repository stays out of its reach", m.Source, rules.Project, via)
		}
	}
	for _, g := range rules.GitDirs {
		if g := realPath(g); g != "" && (within(src, g) || within(g, src)) {
			return sandbox.Mount{}, refuse("%s is, holds or lies in the repository's git directory %s%s", m.Source, g, via)
		}
	}
	if c := realPath(rules.Credentials); c != "" && within(src, c) {
		return sandbox.Mount{}, refuse("%s contains airlock's credentials file %s%s", m.Source, rules.Credentials, via)
	}
	if s := realPath(rules.State); s != "" && (within(src, s) || within(s, src)) {
		return sandbox.Mount{}, refuse("%s is, holds or lies in airlock's state directory %s%s (runs, caches)", m.Source, rules.State, via)
	}
	if err := sandbox.CheckNotEngineSocket(src, rules.EngineSockets); err != nil {
		return sandbox.Mount{}, refuse("%v%s", err, via)
	}
	return sandbox.Mount{Source: src, Target: m.Target, ReadOnly: m.ReadOnly}, nil
}

// realPath is p with its links followed, as far as it exists; "" stays "".
func realPath(p string) string {
	if p == "" {
		return ""
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	// A path that does not exist yet (a credentials file not written):
	// its existing parent's real path, then the rest.
	if parent := realPath(filepath.Dir(p)); parent != "" && parent != filepath.Dir(p) {
		return filepath.Join(parent, filepath.Base(p))
	}
	return filepath.Clean(p)
}

// within reports whether path is dir or lies below it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (rel == "." || !startsWithDotDot(rel))
}

func startsWithDotDot(rel string) bool {
	return len(rel) >= 3 && rel[:3] == ".."+string(filepath.Separator)
}

// mountStrings are mounts as a run's record shows them.
func mountStrings(mounts []sandbox.Mount) []string {
	var out []string
	for _, m := range mounts {
		out = append(out, config.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}.String())
	}
	return out
}
