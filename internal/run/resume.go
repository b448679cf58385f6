package run

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// The agent's conversation lives in its home while the run exists
// (home/.claude/projects/-workspace/: the session transcripts Claude Code
// reads back with --resume, and its project memory). `rm` moves it to
// session/ in the run's directory, next to the logs it is one of, so a
// removed run can still be resumed. Claude Code 2.1.330 needs nothing else
// to resume: with only that directory in a fresh home, --resume=<id> reads
// the whole conversation and keeps appending to the same session id.
const sessionDir = "session"

// ErrSessionLost is returned (wrapped) when a run's conversation cannot be
// resumed because its saved state is gone.
var ErrSessionLost = errors.New("its conversation was not kept")

// sessionRel is the directory of the run's session state, relative to its
// home: the directory of its session log, or, for an agent whose sessions
// airlock cannot name (Codex CLI, Gemini CLI), its whole SessionDir. ""
// when the agent keeps no session airlock can resume.
func sessionRel(r *store.Run) string {
	ag := agentOf(r)
	if rel := ag.SessionLog(containerWorkspace, r.SessionID); rel != "" {
		return filepath.Dir(rel)
	}
	return ag.SessionDir()
}

// sessionKept reports whether src holds the run's session: its log, or,
// without one, any regular file.
func sessionKept(r *store.Run, src string) bool {
	if rel := agentOf(r).SessionLog(containerWorkspace, r.SessionID); rel != "" {
		fi, err := os.Lstat(filepath.Join(src, filepath.Base(rel)))
		return err == nil && fi.Mode().IsRegular()
	}
	found := false
	filepath.WalkDir(src, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	return found
}

// savedSession is where a run's conversation is now: its home while it has
// one, else the copy `rm` kept. It refuses a path through a symbolic link:
// the agent controls its home, and the host copies from it.
func (m *Manager) savedSession(r *store.Run) (string, error) {
	dir := m.Store.RunDir(r.ID)
	if sessionRel(r) == "" {
		return "", fmt.Errorf("cannot resume run %s: %s keeps no session airlock can resume", r.ID, agentOf(r).Title())
	}
	candidates := []string{filepath.Join("home", sessionRel(r)), sessionDir}
	for _, rel := range candidates {
		if err := realDirs(dir, rel); err != nil {
			continue
		}
		src := filepath.Join(dir, rel)
		if sessionKept(r, src) {
			return src, nil
		}
	}
	return "", fmt.Errorf("cannot resume run %s: %w (no transcript of session %s in %s)", r.ID, ErrSessionLost, r.SessionID, dir)
}

// realDirs checks that every component of rel under base is a directory,
// not a symbolic link.
func realDirs(base, rel string) error {
	p := base
	for _, part := range splitPath(rel) {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", p)
		}
	}
	return nil
}

func splitPath(rel string) []string {
	var parts []string
	for rel != "." && rel != "" && rel != string(filepath.Separator) {
		parts = append([]string{filepath.Base(rel)}, parts...)
		rel = filepath.Dir(rel)
	}
	return parts
}

// Resumable reports whether a run can be continued: it must have finished,
// its transcript must still exist, and its work must have come back into
// the project (a resumed run continues on it).
func (m *Manager) Resumable(r *store.Run) error {
	if err := m.sessionResumable(r); err != nil {
		return err
	}
	if r.Here {
		return nil // its work is in the project itself
	}
	return workBroughtBack(r)
}

// sessionResumable reports whether a run's conversation can be continued:
// the run must have finished and its transcript must still exist.
func (m *Manager) sessionResumable(r *store.Run) error {
	if !r.Status.Finished() {
		return fmt.Errorf("cannot resume run %s: it is %s; wait for it or stop it first (`airlock stop %s`)", r.ID, r.Status, r.ID)
	}
	if r.SessionID == "" {
		return fmt.Errorf("cannot resume run %s: %w (it has no session id)", r.ID, ErrSessionLost)
	}
	_, err := m.savedSession(r)
	return err
}

// ErrWorkLost is returned (wrapped) when a run cannot be resumed because its
// work never came back into the project: a resumed run continues on that
// work, and its conversation would refer to edits its copy lacked.
var ErrWorkLost = errors.New("its work was not brought back")

// workBroughtBack insists that a run's work reached the user's repository,
// the base a resumed run starts from.
func workBroughtBack(r *store.Run) error {
	switch {
	case r.Head != "":
		return nil
	case r.HarvestError != "":
		return fmt.Errorf("cannot resume run %s: %w (%s); the conversation would refer to edits a new copy lacks: start a new run instead", r.ID, ErrWorkLost, r.HarvestError)
	default:
		return fmt.Errorf("cannot resume run %s: %w (the agent never ran, or its work is not fetched yet); start a new run instead", r.ID, ErrWorkLost)
	}
}

// restoreSession copies an earlier run's conversation into a new run's home,
// at the same /workspace project path, so the agent resumes it. Nothing
// else of the old home comes along: credentials are the new run's own.
func (m *Manager) restoreSession(from, to *store.Run, uid, gid int) error {
	if err := m.sessionResumable(from); err != nil {
		return err
	}
	src, err := m.savedSession(from)
	if err != nil {
		return err
	}
	home := filepath.Join(m.Store.RunDir(to.ID), "home")
	rel := sessionRel(from)
	// Make the parents owned by the agent, as Claude Code would.
	p := home
	for _, part := range splitPath(filepath.Dir(rel)) {
		p = filepath.Join(p, part)
		if err := mkdirOwned(p, uid, gid); err != nil {
			return fmt.Errorf("restore the conversation of run %s: %w", from.ID, err)
		}
	}
	if err := copyTree(src, filepath.Join(home, rel), uid, gid); err != nil {
		return fmt.Errorf("restore the conversation of run %s: %w", from.ID, err)
	}
	return nil
}

// keepSession moves a run's conversation out of its home into session/,
// before `rm` deletes the home. A run without one (it never started, or
// the agent deleted it) keeps nothing, which is not an error.
func (m *Manager) keepSession(r *store.Run) error {
	if r.SessionID == "" {
		return nil
	}
	dir := m.Store.RunDir(r.ID)
	if sessionRel(r) == "" {
		return nil
	}
	rel := filepath.Join("home", sessionRel(r))
	if err := realDirs(dir, rel); err != nil {
		return nil
	}
	dst := filepath.Join(dir, sessionDir)
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("keep the conversation of run %s: %w", r.ID, err)
	}
	if err := os.Rename(filepath.Join(dir, rel), dst); err != nil {
		return fmt.Errorf("keep the conversation of run %s: %w", r.ID, err)
	}
	return nil
}

func mkdirOwned(p string, uid, gid int) error {
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if fi, err := os.Lstat(p); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", p)
	}
	if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return err
	}
	return nil
}

// copyTree copies the directories and regular files under src to dst,
// owned by uid:gid. Symbolic links and special files are skipped, never
// followed: the tree was written by an agent, and a link to a host file
// must not carry that file into another sandbox.
func copyTree(src, dst string, uid, gid int) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return mkdirOwned(target, uid, gid)
		case d.Type().IsRegular():
			return copyFile(path, target, uid, gid)
		}
		return nil
	})
}

func copyFile(src, dst string, uid, gid int) error {
	// Never a link, and never a FIFO swapped in after the walk saw a file.
	in, err := untrusted.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Lchown(dst, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return err
	}
	return nil
}
