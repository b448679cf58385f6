package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Commit is one of a run's commits. Everything but SHA and Time is the
// agent's text: raw and untrusted, to be sanitised before a terminal and
// shown only as text in a page.
type Commit struct {
	SHA     string    `json:"sha"`
	Subject string    `json:"subject"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	// Stat is the commit's `--stat`, capped (CommitsWithStat).
	Stat string `json:"stat,omitempty"`
}

// Limits on what Commits reads: git's output comes from a repository the
// agent wrote, which can hold a million commits, a subject of megabytes or
// a commit touching every file.
const (
	// commitsMax is how many of the newest commits are read.
	commitsMax = 500
	// commitsOutputMax caps git's whole output. Past it the output is
	// cut off (and git stopped), and only the commits read whole are
	// kept: the newest ones.
	commitsOutputMax = 4 << 20
	subjectMax       = 1024
	authorMax        = 256
	statMax          = 16 << 10
	// commitsTimeout bounds one listing: an agent can make git slow.
	commitsTimeout = time.Minute
)

// logOptions are the options of the `git log` that lists a run's commits,
// in the sandbox and on the host alike. Each record starts with a NUL and
// has NUL-separated fields: SHA, author, time, subject, then the stat (or
// nothing). Git truncates the author and subject itself, so that they stay
// short whatever the commit says.
func logOptions(withStat bool) []string {
	opts := []string{
		"--max-count=" + strconv.Itoa(commitsMax),
		"--format=%x00%H%x00%<(100,trunc)%an%x00%at%x00%<(300,trunc)%s%x00",
	}
	if withStat {
		// Width, name width, and at most 50 files: a commit of every
		// file in the tree is one line of "..." past that.
		opts = append(opts, "--stat=120,80,50")
	}
	return opts
}

// sandboxGit runs git in the sandbox on the agent's copy. The copy's
// configuration is the agent's; this keeps its output parseable, it is no
// protection (the sandbox is the agent's anyway).
var sandboxGit = []string{
	"git",
	"-c", "core.fsmonitor=false",
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.pager=cat",
	"-c", "i18n.logOutputEncoding=UTF-8",
	"log", "--no-ext-diff", "--no-textconv", "--no-show-signature", "--no-color", "--no-relative",
}

// Commits lists the run's commits since its base, oldest first: the newest
// commitsMax of them. For a running run it runs git INSIDE the sandbox, as
// the agent (host git never runs in the agent's copy: its configuration
// and hooks are the agent's); for a finished run whose work was brought
// back, host git on the user's repository, on base..airlock/<id>. withStat
// adds each commit's --stat. The output is capped and parsed strictly: a
// malformed listing is an error, never half-believed.
func (m *Manager) Commits(ctx context.Context, r *store.Run, withStat bool) ([]Commit, error) {
	// A run that ends between looking at it and opening a session into it
	// is looked at again: then it is finished.
	for range 2 {
		r, err := m.Collect(ctx, r)
		if err != nil {
			return nil, err
		}
		if err := commitsAvailable(r); err != nil {
			return nil, err
		}
		if r.Status.Finished() {
			return m.harvestedCommits(ctx, r, withStat)
		}
		s, err := m.Session(ctx, r)
		if errors.Is(err, ErrNotRunning) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list the commits of run %s: %w", r.ID, err)
		}
		return sandboxCommits(ctx, s, withStat)
	}
	return nil, fmt.Errorf("list the commits of run %s: it is neither running nor finished", r.ID)
}

// commitsAvailable says why a run has no commits to list, if it has none.
func commitsAvailable(r *store.Run) error {
	switch {
	case r.Removed():
		return fmt.Errorf("run %s was removed: its commits are gone with its branch", r.ID)
	case r.Here:
		return fmt.Errorf("run %s worked on the project directory itself (--here): its commits are on your branch (git log)", r.ID)
	case r.Status == store.StatusCreating:
		return fmt.Errorf("run %s is still being created: it has no commits yet", r.ID)
	case r.BaseCommit == "":
		return fmt.Errorf("run %s has no base commit: there is nothing to list its commits against", r.ID)
	case r.Status.Finished() && r.HarvestError != "":
		return fmt.Errorf("run %s: its work could not be brought back, so neither could its commits: %s", r.ID, r.HarvestError)
	case r.Status.Finished() && !r.Harvested:
		return fmt.Errorf("run %s: its work has not been brought back yet", r.ID)
	}
	return nil
}

// sandboxCommits runs git log in the running sandbox.
func sandboxCommits(ctx context.Context, s *Session, withStat bool) ([]Commit, error) {
	r := s.Run
	ctx, cancel := context.WithTimeout(ctx, commitsTimeout)
	defer cancel()
	cmd := slices.Concat(sandboxGit, logOptions(withStat),
		[]string{"--end-of-options", r.BaseCommit + "..refs/heads/" + r.Branch, "--"})
	data, over, err := sandboxOutput(ctx, s, cmd, commitsOutputMax)
	if err != nil {
		return nil, fmt.Errorf("list the commits of run %s: git log in its sandbox: %w", r.ID, err)
	}
	commits, err := parseLog(data, over)
	if err != nil {
		return nil, fmt.Errorf("list the commits of run %s: git log in its sandbox: %w", r.ID, err)
	}
	return commits, nil
}

// harvestedCommits runs git log on the user's repository, on the branch the
// run's work was brought back to.
func (m *Manager) harvestedCommits(ctx context.Context, r *store.Run, withStat bool) ([]Commit, error) {
	ctx, cancel := context.WithTimeout(ctx, commitsTimeout)
	defer cancel()
	out := &cappedBuffer{max: commitsOutputMax, full: cancel}
	err := workspace.Log(ctx, r.Project, r.BaseCommit, r.ID, logOptions(withStat), out)
	data, over := out.result()
	if err != nil && !over {
		return nil, fmt.Errorf("list the commits of run %s: %w", r.ID, err)
	}
	commits, err := parseLog(data, over)
	if err != nil {
		return nil, fmt.Errorf("list the commits of run %s: git log: %w", r.ID, err)
	}
	return commits, nil
}

var (
	commitSHA = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)
	unixTime  = regexp.MustCompile(`^[0-9]{1,12}$`)
)

// parseLog reads logOptions' output, newest commit first, and returns the
// commits oldest first. cut says the output was cut off at the cap: its
// last record, which may be partial, is dropped.
func parseLog(out []byte, cut bool) ([]Commit, error) {
	if len(out) == 0 {
		return nil, nil
	}
	if out[0] != 0 {
		return nil, errors.New("unexpected output: it does not start with a commit")
	}
	// Records are NUL, SHA, author, time, subject, stat: five fields
	// after each record's leading NUL. Neither git's stat (paths hold no
	// NUL) nor a truncated author or subject can hold one.
	fields := strings.Split(string(out[1:]), "\x00")
	if cut {
		// A record is whole when the next one's NUL follows its stat.
		fields = fields[:5*((len(fields)-1)/5)]
	}
	if len(fields)%5 != 0 {
		return nil, fmt.Errorf("unexpected output: %d fields, not five for each commit", len(fields))
	}
	var commits []Commit
	for i := 0; i < len(fields); i += 5 {
		f := fields[i : i+5]
		sha := f[0]
		if !commitSHA.MatchString(sha) {
			return nil, fmt.Errorf("unexpected output: %q is not a commit id", clip(sha, 80))
		}
		if !unixTime.MatchString(f[2]) {
			return nil, fmt.Errorf("unexpected output: commit %s has the time %q", sha, clip(f[2], 80))
		}
		secs, _ := strconv.ParseInt(f[2], 10, 64)
		stat := strings.Trim(f[4], "\n")
		if strings.TrimSpace(stat) == "" {
			stat = ""
		}
		commits = append(commits, Commit{
			SHA:     sha,
			Author:  clip(strings.TrimRight(f[1], " "), authorMax),
			Time:    time.Unix(secs, 0).UTC(),
			Subject: clip(strings.TrimRight(f[3], " "), subjectMax),
			Stat:    clip(stat, statMax),
		})
	}
	slices.Reverse(commits)
	return commits, nil
}

// clip cuts s to at most n bytes, on a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// cappedBuffer keeps the first max bytes written to it and drops the rest;
// once full it calls full (to stop the writer). An exec that is stopped
// may return before its copying does: it is safe for concurrent use.
type cappedBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	max  int
	over bool
	full func()
}

// result is what was kept, and whether more was dropped.
func (b *cappedBuffer) result() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes()), b.over
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.max - b.buf.Len(); len(p) > room {
		p = p[:max(room, 0)]
		if !b.over {
			b.over = true
			if b.full != nil {
				b.full()
			}
		}
	}
	b.buf.Write(p)
	return n, nil
}
