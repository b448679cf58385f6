// Package store is the run registry: one directory per run under the XDG
// state dir, holding run.json and everything else the run owns on the host.
//
// Every run has its own file and its own lock, so many `airlock run -d`
// started at once never contend; a record is replaced atomically (write to a
// temporary file, then rename), so a crash leaves either the old record or the
// new one, never half of each.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Status is where a run is in its life.
type Status string

const (
	StatusCreating  Status = "creating"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusStopped   Status = "stopped"
	StatusMerged    Status = "merged"
)

// Finished reports whether the agent is done (whatever the outcome).
func (s Status) Finished() bool {
	switch s {
	case StatusSucceeded, StatusFailed, StatusStopped, StatusMerged:
		return true
	}
	return false
}

// Cloud records how a run's cloud model credentials were chosen on the host
// (provider.Settings): names and paths, never a secret.
type Cloud struct {
	Provider        string `json:"provider"`
	Region          string `json:"region,omitempty"`
	Project         string `json:"project,omitempty"`
	Profile         string `json:"profile,omitempty"`
	ConfigFile      string `json:"config_file,omitempty"`
	CredentialsFile string `json:"credentials_file,omitempty"`
	// Static credentials came from variables another process cannot read
	// again; they are not refreshed.
	Static bool `json:"static,omitempty"`
}

// Run is one run's record. Its JSON form is the documented, stable schema of
// `airlock ls --json` (docs/runs-json.md): fields are only ever added.
type Run struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Project    string `json:"project"`
	Status     Status `json:"status"`
	Branch     string `json:"branch"`
	BaseBranch string `json:"base_branch"`
	BaseCommit string `json:"base_commit,omitempty"`
	Prompt     string `json:"prompt"`
	Agent      string `json:"agent"`
	Model      string `json:"model,omitempty"`
	MaxTurns   int    `json:"max_turns,omitempty"`
	Image      string `json:"image"`
	// Cloud is the cloud model provider the run's proxy signs for, and
	// which host credentials: what a process supervising the run needs to
	// fetch them again as they expire. Nothing secret.
	Cloud      *Cloud    `json:"cloud,omitempty"`
	Container  string    `json:"container,omitempty"`
	SessionID  string    `json:"session_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	// Error says why a run failed or stopped, in words for people.
	Error string `json:"error,omitempty"`
	// CreatorPID is the airlock process creating the run, while it does;
	// a creating run whose creator is gone was interrupted.
	CreatorPID    int  `json:"creator_pid,omitempty"`
	StopRequested bool `json:"stop_requested,omitempty"`
	// StopReason is "user", "budget" or "disk" for a stopped run.
	StopReason string `json:"stop_reason,omitempty"`

	// Kind is "headless" (claude -p) or "shell" (interactive, in tmux).
	Kind       string `json:"kind,omitempty"`
	Persistent bool   `json:"persistent,omitempty"`
	// ResumedFrom is the run whose conversation this one continues.
	ResumedFrom string  `json:"resumed_from,omitempty"`
	MaxCostUSD  float64 `json:"max_cost_usd,omitempty"`
	Timeout     string  `json:"timeout,omitempty"`
	// Deadline is when the run's time is up, on the host's clock: its
	// creation plus its timeout. The proxy refuses traffic after it and the
	// host stops the container; nothing in the sandbox can move it.
	Deadline time.Time `json:"deadline,omitzero"`
	Caches   []string  `json:"caches,omitempty"`
	// Here: the agent worked on the live project directory, not a copy.
	Here bool `json:"here,omitempty"`
	// DiskBytes is the run's disk quota: its workspace, home and log
	// directories together may not grow past it.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
	// Runtime is the OCI runtime the agent and its harvest ran under, such
	// as "runsc" (gVisor); empty means the engine's default.
	Runtime string `json:"runtime,omitempty"`
	// Mounts are the host paths the user gave the agent (sandbox.mounts),
	// "SOURCE:TARGET:ro|rw" with SOURCE as mounted (links followed).
	Mounts []string `json:"mounts,omitempty"`
	// Setup are the commands run in the sandbox before the agent
	// (sandbox.setup, the prompt's setup:); SetupDone says the host saw
	// them complete, so a persistent run's `start` does not repeat them.
	Setup     []string `json:"setup,omitempty"`
	SetupDone bool     `json:"setup_done,omitempty"`
	// Ports are the sandbox's TCP ports forwarded to the host's loopback
	// (-p), "127.0.0.1:HOSTPORT->PORT"; only while the run is running.
	Ports []string `json:"ports,omitempty"`

	// EgressAllowed and EgressDenied count the egress proxy's decisions.
	EgressAllowed int `json:"egress_allowed"`
	EgressDenied  int `json:"egress_denied"`

	// Turns, cost and tokens are metered by the run's egress proxy from the
	// model API's own responses, never taken from the agent's transcript.
	Turns        int     `json:"turns"`
	CostUSD      float64 `json:"cost_usd"`
	InputTokens  int     `json:"input_tokens"`
	OutputTokens int     `json:"output_tokens"`
	// AgentClaim is what the agent's transcript says of its own run. The
	// sandbox can write anything there, so it is shown as a claim and
	// decides nothing.
	AgentClaim *Claim `json:"agent_claim,omitempty"`

	// Head is the tip of the run's branch once its work has been brought
	// into the user's repository; Uncommitted is the snapshot commit of
	// changes the agent left uncommitted, if any.
	Harvested   bool   `json:"harvested"`
	Head        string `json:"head,omitempty"`
	Uncommitted string `json:"uncommitted,omitempty"`
	// HarvestError says why the run's work could not be brought back (for
	// example: the agent deleted its copy's .git).
	HarvestError string `json:"harvest_error,omitempty"`
	// HarvestWarning says what part of the work did not come back although
	// the branch did (for example, the snapshot of uncommitted changes).
	HarvestWarning string `json:"harvest_warning,omitempty"`

	MergedAt  time.Time `json:"merged_at,omitzero"`
	RemovedAt time.Time `json:"removed_at,omitzero"`
}

// Claim is the agent's own account of its run, from its transcript's
// result line.
type Claim struct {
	// Result is the result line's subtype, such as "success" or
	// "error_max_turns"; empty when the transcript has no result line.
	Result  string  `json:"result,omitempty"`
	IsError bool    `json:"is_error,omitempty"`
	Turns   int     `json:"turns,omitempty"`
	CostUSD float64 `json:"cost_usd,omitempty"`
}

// Removed reports whether `rm` has removed the run's container, copy and branch.
func (r *Run) Removed() bool { return !r.RemovedAt.IsZero() }

// ErrNotFound is returned (wrapped) when no run matches.
var ErrNotFound = errors.New("no such run")

// Store is the registry rooted at a directory.
type Store struct {
	dir string
}

// Open returns the store rooted at dir, creating it if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "runs"), 0o700); err != nil {
		return nil, fmt.Errorf("open run registry %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// DefaultDir is $XDG_STATE_HOME/airlock, or ~/.local/state/airlock.
func DefaultDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "airlock"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", errors.New("neither XDG_STATE_HOME nor HOME is set: cannot place the run registry")
	}
	return filepath.Join(home, ".local", "state", "airlock"), nil
}

// Dir is the store's root.
func (s *Store) Dir() string { return s.dir }

// RunDir is the directory that holds everything a run owns on the host.
func (s *Store) RunDir(id string) string { return filepath.Join(s.dir, "runs", id) }

// Create records a new run. It fails if the ID is taken.
func (s *Store) Create(r *Run) error {
	dir := s.RunDir(r.ID)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("record run %s: a run with this ID already exists", r.ID)
		}
		return fmt.Errorf("record run %s: %w", r.ID, err)
	}
	if err := s.write(r); err != nil {
		os.RemoveAll(dir)
		return err
	}
	return nil
}

// Get reads one run's record.
func (s *Store) Get(id string) (*Run, error) {
	data, err := os.ReadFile(filepath.Join(s.RunDir(id), "run.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, fmt.Errorf("read run %s: %w", id, err)
	}
	var r Run
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read run %s: corrupt record %s: %w", id, filepath.Join(s.RunDir(id), "run.json"), err)
	}
	return &r, nil
}

// Update applies fn to the run's record under the run's lock and saves the
// result. If fn fails, nothing is written.
func (s *Store) Update(id string, fn func(*Run) error) (*Run, error) {
	unlock, err := s.lock(id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	if err := fn(r); err != nil {
		return nil, err
	}
	if err := s.write(r); err != nil {
		return nil, err
	}
	return r, nil
}

// List returns every recorded run, newest first. Directories without a
// readable record (a crash between mkdir and the first write) are skipped.
func (s *Store) List() ([]*Run, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "runs"))
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var runs []*Run
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r, err := s.Get(e.Name())
		if err != nil {
			continue
		}
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool {
		if !runs[i].CreatedAt.Equal(runs[j].CreatedAt) {
			return runs[i].CreatedAt.After(runs[j].CreatedAt)
		}
		return runs[i].ID > runs[j].ID
	})
	return runs, nil
}

// ErrOtherProject is returned (wrapped) when a reference names no run of the
// project it was resolved in but does name a run of another project.
var ErrOtherProject = fmt.Errorf("%w in this project", ErrNotFound)

// Resolve finds the run a user means within project, or within every project
// when project is "". An empty ref is the project's most recent run;
// otherwise an exact ID, a run name (the most recent run of that name) or a
// unique ID prefix. A reference is never resolved to another project's run
// behind the user's back: merging or removing the wrong repository's work is
// worse than an error, which says where the run it names lives.
func (s *Store) Resolve(project, ref string) (*Run, error) {
	runs, err := s.List()
	if err != nil {
		return nil, err
	}
	if ref == "" {
		for _, r := range runs {
			if (project == "" || r.Project == project) && !r.Removed() {
				return r, nil
			}
		}
		return nil, fmt.Errorf("%w: this project has no runs yet (start one with `airlock run`)", ErrNotFound)
	}
	var mine, others []*Run
	for _, r := range runs {
		if project == "" || r.Project == project {
			mine = append(mine, r)
		} else {
			others = append(others, r)
		}
	}
	r, err := match(mine, ref)
	if !errors.Is(err, ErrNotFound) {
		return r, err
	}
	if o, oerr := match(others, ref); oerr == nil {
		return nil, fmt.Errorf("%w: %q is run %s, which belongs to %s, not to this project (%s)", ErrOtherProject, ref, o.ID, o.Project, project)
	}
	return nil, err
}

// match resolves ref among runs (newest first): an exact ID, a name (the
// newest run of that name; ambiguous if several projects use it), then a
// unique ID prefix.
func match(runs []*Run, ref string) (*Run, error) {
	var named, prefixed []*Run
	seen := map[string]bool{} // projects with a run of that name
	for _, r := range runs {
		if r.ID == ref {
			return r, nil
		}
		if r.Name == ref && !seen[r.Project] {
			seen[r.Project] = true
			named = append(named, r)
		}
		if strings.HasPrefix(r.ID, ref) {
			prefixed = append(prefixed, r)
		}
	}
	switch {
	case len(named) == 1:
		return named[0], nil
	case len(named) > 1:
		return nil, ambiguous(ref, named)
	}
	switch len(prefixed) {
	case 1:
		return prefixed[0], nil
	case 0:
		return nil, fmt.Errorf("%w: %q (see `airlock ls -a`)", ErrNotFound, ref)
	}
	return nil, ambiguous(ref, prefixed)
}

func ambiguous(ref string, runs []*Run) error {
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	return fmt.Errorf("%q is ambiguous: it matches %s", ref, strings.Join(ids, ", "))
}

func (s *Store) write(r *Run) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode run %s: %w", r.ID, err)
	}
	dir := s.RunDir(r.ID)
	tmp, err := os.CreateTemp(dir, ".run.json.*")
	if err != nil {
		return fmt.Errorf("save run %s: %w", r.ID, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save run %s: %w", r.ID, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save run %s: %w", r.ID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save run %s: %w", r.ID, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "run.json")); err != nil {
		return fmt.Errorf("save run %s: %w", r.ID, err)
	}
	return nil
}

// lock takes the run's record lock; the returned func releases it.
func (s *Store) lock(id string) (func(), error) { return s.flock(id, "lock") }

// flock takes an exclusive lock on a file in the run's directory. flock locks
// belong to the open file, so two different files never block each other,
// even within one process.
func (s *Store) flock(id, name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.RunDir(id), name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, fmt.Errorf("lock run %s: %w", id, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock run %s: %w", id, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Lock holds a run's work lock while fn runs, for work that must not happen
// twice at once (harvesting a finished run's work, removing it). It is not the
// record lock, so fn may call Update.
func (s *Store) Lock(id string, fn func() error) error {
	unlock, err := s.flock(id, "work.lock")
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}
