package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/airlock-dev/airlock/internal/prompt"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
)

// world is a test's machine: its own run registry, HOME and git identity,
// and repositories made with real git. Runs are recorded as airlock records
// them once finished and harvested (branch airlock/<run> in the project), so
// the review commands work on them without an engine.
type world struct {
	t     *testing.T
	state string
	n     int // runs recorded, for distinct creation times
}

func newWorld(t *testing.T) *world {
	t.Helper()
	home := t.TempDir()
	cfg := filepath.Join(home, ".gitconfig")
	if err := os.WriteFile(cfg, []byte("[user]\n\tname = Test User\n\temail = user@example.test\n[init]\n\tdefaultBranch = main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("GIT_CONFIG_GLOBAL", cfg)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	return &world{t: t, state: t.TempDir()}
}

// repo makes a repository with one commit and returns its top directory.
func (w *world) repo(name string) string {
	w.t.Helper()
	dir := filepath.Join(w.t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	w.git(dir, "init", "-q", "-b", "main")
	writeTestFile(w.t, filepath.Join(dir, "README.md"), "# "+name+"\n")
	w.git(dir, "add", ".")
	w.git(dir, "commit", "-q", "-m", "initial")
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		w.t.Fatal(err)
	}
	return real
}

func (w *world) git(dir string, args ...string) string {
	w.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// addRun records a finished, harvested run of repo whose branch commits
// files; uncommitted, if any, become its snapshot of uncommitted changes.
func (w *world) addRun(repo, id, name string, status store.Status, files, uncommitted map[string]string) *store.Run {
	w.t.Helper()
	base := w.git(repo, "rev-parse", "HEAD")
	w.git(repo, "checkout", "-q", "-b", "airlock/"+id)
	for p, c := range files {
		writeTestFile(w.t, filepath.Join(repo, p), c)
	}
	w.git(repo, "add", ".")
	w.git(repo, "commit", "-q", "--allow-empty", "-m", "work of "+id)
	head := w.git(repo, "rev-parse", "HEAD")
	snap := ""
	if len(uncommitted) > 0 {
		for p, c := range uncommitted {
			writeTestFile(w.t, filepath.Join(repo, p), c)
		}
		w.git(repo, "add", ".")
		w.git(repo, "commit", "-q", "-m", "snapshot")
		snap = w.git(repo, "rev-parse", "HEAD")
		w.git(repo, "update-ref", "refs/airlock/uncommitted/"+id, snap)
		w.git(repo, "update-ref", "refs/heads/airlock/"+id, head)
	}
	w.git(repo, "checkout", "-q", "-f", "main")
	st, err := store.Open(filepath.Join(w.state, "airlock"))
	if err != nil {
		w.t.Fatal(err)
	}
	w.n++
	created := time.Date(2026, 11, 26, 10, 0, w.n, 0, time.UTC)
	r := &store.Run{
		ID: id, Name: name, Project: repo, Status: status, Branch: "airlock/" + id, BaseBranch: "main",
		BaseCommit: base, Agent: "claude", Kind: run.KindHeadless, CreatedAt: created, StartedAt: created,
		FinishedAt: created.Add(time.Minute), Harvested: true, Head: head, Uncommitted: snap,
	}
	if status == store.StatusFailed {
		r.Error = "the agent exited with status 1"
	}
	if err := st.Create(r); err != nil {
		w.t.Fatal(err)
	}
	return r
}

// cli runs airlock's command tree in-process, from directory wd, and
// returns its exit status and output.
func (w *world) cli(wd string, args ...string) (code int, stdout, stderr string) {
	w.t.Helper()
	return w.cliTTY(wd, false, args...)
}

func (w *world) cliTTY(wd string, tty bool, args ...string) (code int, stdout, stderr string) {
	w.t.Helper()
	var out, errOut bytes.Buffer
	f := &Factory{
		IO: &IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut, StdoutTTY: tty},
		Getenv: func(k string) string {
			if k == "XDG_STATE_HOME" {
				return w.state
			}
			return os.Getenv(k)
		},
		Environ: os.Environ,
		Now:     func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) },
		Getwd:   func() (string, error) { return wd, nil },
		UID:     os.Getuid(),
		GID:     os.Getgid(),
	}
	root := NewRootCmd(f)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = exitStatus(f, root.ExecuteContext(ctx))
	return code, out.String(), errOut.String()
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A run of repository A is never merged (or diffed, removed, waited for,
// shown) by a command given in repository B: the error names A. With
// --all-projects it is, and the output names the repository changed.
func TestRunReferencesStayInTheirProject(t *testing.T) {
	w := newWorld(t)
	a, b := w.repo("a"), w.repo("b")
	w.addRun(a, "fix-aaaa1111", "fix", store.StatusSucceeded, map[string]string{"fixed.txt": "fixed\n"}, nil)
	w.addRun(b, "docs-bbbb2222", "docs", store.StatusSucceeded, map[string]string{"docs.txt": "docs\n"}, nil)
	mainOfA := w.git(a, "rev-parse", "main")

	for _, args := range [][]string{
		{"merge", "fix-aaaa1111"},
		{"merge", "fix"},
		{"merge", "fix-a"},
		{"diff", "fix-aaaa1111"},
		{"logs", "fix"},
		{"wait", "fix"},
		{"rm", "-y", "--force", "fix-aaaa1111"},
	} {
		code, _, stderr := w.cli(b, args...)
		if code == 0 || !strings.Contains(stderr, a) || !strings.Contains(stderr, "--all-projects") {
			t.Errorf("airlock %s in B: exit %d, stderr %q; want a failure naming %s and --all-projects", strings.Join(args, " "), code, stderr, a)
		}
	}
	if got := w.git(a, "rev-parse", "main"); got != mainOfA {
		t.Fatalf("A's main moved from %s to %s: a command in B changed A", mainOfA, got)
	}
	if _, err := os.Stat(filepath.Join(w.state, "airlock", "runs", "fix-aaaa1111")); err != nil {
		t.Fatal(err)
	}

	code, _, stderr := w.cli(b, "merge", "--all-projects", "fix")
	if code != 0 || !strings.Contains(stderr, "Merged fix-aaaa1111 into main of "+a) {
		t.Fatalf("merge --all-projects: exit %d, stderr %q; want it to name %s", code, stderr, a)
	}
	if got := w.git(a, "show", "main:fixed.txt"); got != "fixed" {
		t.Fatalf("A's main has fixed.txt = %q", got)
	}
	code, _, stderr = w.cli(b, "merge", "docs")
	if code != 0 || !strings.Contains(stderr, "of "+b) {
		t.Fatalf("merge in its own project: exit %d, stderr %q", code, stderr)
	}
}

// Outside any repository a reference needs --all-projects.
func TestRunReferenceOutsideARepository(t *testing.T) {
	w := newWorld(t)
	a := w.repo("a")
	w.addRun(a, "fix-aaaa1111", "fix", store.StatusSucceeded, map[string]string{"f": "x\n"}, nil)
	nowhere := t.TempDir()
	if code, _, stderr := w.cli(nowhere, "diff", "fix"); code == 0 || !strings.Contains(stderr, "--all-projects") {
		t.Fatalf("diff outside a repository: exit %d, %q", code, stderr)
	}
	if code, stdout, stderr := w.cli(nowhere, "diff", "--all-projects", "--name-only", "fix"); code != 0 || stdout != "f\n" {
		t.Fatalf("diff --all-projects outside a repository: exit %d, %q, %q", code, stdout, stderr)
	}
}

func TestCostText(t *testing.T) {
	a, b := 0.0001, 0.00004 // summed at run time: 0.00014000000000000001
	tests := []struct {
		usd  float64
		want string
	}{
		{0, "-"},
		{a + b, "$0.00014"},
		{0.001234, "$0.001234"},
		{0.0012345678, "$0.001235"},
		{0.0000001, "$0.0000001"},
		{0.00999999, "$0.01"},
		{0.01, "$0.01"},
		{1.5, "$1.50"},
		{23, "$23.00"},
	}
	for _, tt := range tests {
		if got := cost(tt.usd); got != tt.want {
			t.Errorf("cost(%v) = %q, want %q", tt.usd, got, tt.want)
		}
	}
}

// ls shows sub-cent costs (not $0.00) and their total; --json has no float
// noise and no total.
func TestLsCosts(t *testing.T) {
	w := newWorld(t)
	a := w.repo("a")
	for i, c := range []float64{0.0001 + zero(0.00004), 0.001234, 0.5} {
		id := []string{"one-aaaa1111", "two-bbbb2222", "three-cccc3333"}[i]
		w.addRun(a, id, strings.Split(id, "-")[0], store.StatusSucceeded, nil, nil)
		st, _ := store.Open(filepath.Join(w.state, "airlock"))
		if _, err := st.Update(id, func(r *store.Run) error { r.CostUSD = c; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr := w.cliTTY(a, true, "ls")
	if code != 0 {
		t.Fatalf("ls: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"$0.00014", "$0.001234", "$0.50", "Total cost of 3 run(s): $0.50", "AGENT", "claude"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("ls does not show %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "$0.00 ") || strings.Contains(stdout, "$0.00\n") {
		t.Errorf("ls shows $0.00 for a sub-cent cost:\n%s", stdout)
	}
	code, stdout, _ = w.cli(a, "ls", "--json")
	if code != 0 || strings.Contains(stdout, "0.00014000000000000001") || !strings.Contains(stdout, `"cost_usd": 0.00014,`) || strings.Contains(stdout, "Total") {
		t.Fatalf("ls --json: exit %d\n%s", code, stdout)
	}
	var runs []store.Run
	if err := json.Unmarshal([]byte(stdout), &runs); err != nil || len(runs) != 3 {
		t.Fatalf("ls --json: %v, %d runs", err, len(runs))
	}
}

// zero returns x, computed at run time so that sums are float sums.
func zero(x float64) float64 { return x }

func TestDiffPathsAndNameOnly(t *testing.T) {
	w := newWorld(t)
	a := w.repo("a")
	w.addRun(a, "fix-aaaa1111", "fix", store.StatusSucceeded,
		map[string]string{"a.txt": "a\n", "dir/b.txt": "b\n"},
		map[string]string{"dir/c.txt": "left over\n", "a.txt": "a, changed again\n"})

	tests := []struct {
		name, wd  string
		args      []string
		want      string // exact stdout, or "" to check contains/absent
		has, hasn []string
	}{
		{name: "name-only", wd: a, args: []string{"diff", "fix", "--name-only"}, want: "a.txt\ndir/b.txt\ndir/c.txt\n"},
		{name: "name-only limited", wd: a, args: []string{"diff", "--name-only", "fix", "--", "dir"}, want: "dir/b.txt\ndir/c.txt\n"},
		{name: "paths", wd: a, args: []string{"diff", "fix", "--", "dir/b.txt"},
			has: []string{"+++ b/dir/b.txt"}, hasn: []string{"a.txt", "c.txt", "Uncommitted"}},
		{name: "paths relative to a subdirectory", wd: filepath.Join(a, "dir"), args: []string{"diff", "fix", "--", "c.txt"},
			has: []string{"Uncommitted changes left by the agent", "+++ b/dir/c.txt"}, hasn: []string{"b.txt", "a.txt"}},
		{name: "stat limited", wd: a, args: []string{"diff", "--stat", "fix", "--", "a.txt"},
			has: []string{"a.txt"}, hasn: []string{"b.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.MkdirAll(tt.wd, 0o755); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := w.cli(tt.wd, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if tt.want != "" && stdout != tt.want {
				t.Fatalf("stdout %q, want %q", stdout, tt.want)
			}
			for _, s := range tt.has {
				if !strings.Contains(stdout, s) {
					t.Errorf("no %q in\n%s", s, stdout)
				}
			}
			for _, s := range tt.hasn {
				if strings.Contains(stdout, s) {
					t.Errorf("%q in\n%s", s, stdout)
				}
			}
		})
	}
	if code, _, stderr := w.cli(a, "diff", "fix", "other"); code != ExitUsage || !strings.Contains(stderr, "paths go after --") {
		t.Errorf("two runs: exit %d, %q", code, stderr)
	}
	if code, _, _ := w.cli(a, "diff", "--stat", "--name-only", "fix"); code != ExitUsage {
		t.Errorf("--stat --name-only: exit %d", code)
	}
}

// wait RUN... waits for every run, prints each outcome and exits 0 only if
// all succeeded.
func TestWaitForSeveralRuns(t *testing.T) {
	w := newWorld(t)
	a := w.repo("a")
	w.addRun(a, "one-aaaa1111", "one", store.StatusSucceeded, map[string]string{"1": "1\n"}, nil)
	w.addRun(a, "two-bbbb2222", "two", store.StatusSucceeded, map[string]string{"2": "2\n"}, nil)
	w.addRun(a, "bad-cccc3333", "bad", store.StatusFailed, map[string]string{"3": "3\n"}, nil)

	code, _, stderr := w.cli(a, "wait", "one", "two")
	if code != ExitOK || !strings.Contains(stderr, "Run one-aaaa1111 succeeded") || !strings.Contains(stderr, "Run two-bbbb2222 succeeded") {
		t.Fatalf("wait one two: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "Its work is on branch airlock/one-aaaa1111 in "+a) {
		t.Errorf("wait does not name the repository its branch is in:\n%s", stderr)
	}
	code, _, stderr = w.cli(a, "wait", "one", "bad", "two")
	if code != ExitRunFail || !strings.Contains(stderr, "Run bad-cccc3333 failed") || strings.Count(stderr, "succeeded") != 2 {
		t.Fatalf("wait one bad two: exit %d, want %d\n%s", code, ExitRunFail, stderr)
	}
	// A bad reference is an error before any waiting.
	code, _, stderr = w.cli(a, "wait", "one", "nosuch")
	if code != ExitFailure || strings.Contains(stderr, "succeeded") {
		t.Fatalf("wait one nosuch: exit %d\n%s", code, stderr)
	}
}

// logs of a run stopped before the agent wrote a result says who stopped
// it and when, not "no result yet".
func TestLogsOfAStoppedRun(t *testing.T) {
	w := newWorld(t)
	a := w.repo("a")
	tests := []struct {
		reason, want string
	}{
		{run.StopReasonUser, "stopped by you"},
		{run.StopReasonBudget, "stopped by its budget"},
		{"timeout", "stopped by the host: its time (--timeout) ran out"},
		{"disk", "stopped by the host: its disk quota was full"},
	}
	st, _ := store.Open(filepath.Join(w.state, "airlock"))
	for i, tt := range tests {
		id := []string{"s-aaaa1111", "s-bbbb2222", "s-cccc3333", "s-dddd4444"}[i]
		r := w.addRun(a, id, "s"+tt.reason, store.StatusStopped, nil, nil)
		if _, err := st.Update(id, func(r *store.Run) error {
			r.StopReason = tt.reason
			r.Error = "stopped (" + tt.reason + ")"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := w.cli(a, "logs", id)
		when := r.FinishedAt.Local().Format("2006-01-02 15:04:05 MST")
		if code != 0 || !strings.Contains(stdout, tt.want) || !strings.Contains(stdout, when) || strings.Contains(stdout, "no result yet") {
			t.Errorf("logs of a run stopped (%s): exit %d, want %q at %s\n%s%s", tt.reason, code, tt.want, when, stdout, stderr)
		}
	}
}

// Cobra takes a backquoted word in a flag's usage as the flag's
// placeholder (--persistent airlock start): no usage may have one.
func TestFlagUsagesHaveNoBackquotes(t *testing.T) {
	root := NewRootCmd(&Factory{IO: &IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(fl *pflag.Flag) {
				if strings.Contains(fl.Usage, "`") {
					t.Errorf("%s --%s: backquote in usage %q", c.CommandPath(), fl.Name, fl.Usage)
				}
			})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func TestHelpListsEveryFrontmatterKey(t *testing.T) {
	w := newWorld(t)
	_, stdout, _ := w.cli(t.TempDir(), "run", "--help")
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if list := "(" + strings.Join(prompt.Keys(), ", ") + ")"; !strings.Contains(stdout, list) {
		t.Errorf("run --help does not list the frontmatter keys %s:\n%s", list, stdout)
	}
	for _, k := range prompt.Keys() {
		if !strings.Contains(string(readme), "\n"+k+":") {
			t.Errorf("README's prompt example does not show frontmatter key %q", k)
		}
	}
}

// -v is verbosity (run, logs), never the version: --version only.
func TestVersionFlagIsNotV(t *testing.T) {
	w := newWorld(t)
	if code, stdout, _ := w.cli(t.TempDir(), "-v"); code != ExitUsage || strings.Contains(stdout, "airlock") {
		t.Errorf("airlock -v: exit %d, %q; want a usage error", code, stdout)
	}
	code, stdout, _ := w.cli(t.TempDir(), "--version")
	_, want, _ := w.cli(t.TempDir(), "version")
	if code != 0 || stdout != want || !strings.HasPrefix(stdout, "airlock ") || strings.Contains(stdout, "dev\n") {
		t.Errorf("airlock --version: exit %d, %q; airlock version: %q", code, stdout, want)
	}
}

// Completion offers this project's run IDs and names for RUN, prompt names
// for run's TASK, and the shell scripts come from cobra.
func TestCompletion(t *testing.T) {
	w := newWorld(t)
	a, b := w.repo("a"), w.repo("b")
	w.addRun(a, "fix-aaaa1111", "fix", store.StatusSucceeded, nil, nil)
	w.addRun(a, "docs-bbbb2222", "docs", store.StatusSucceeded, nil, nil)
	w.addRun(b, "other-cccc3333", "other", store.StatusSucceeded, nil, nil)
	writeTestFile(t, filepath.Join(a, ".airlock", "prompts", "fix-auth.md"), "Fix it.\n")
	writeTestFile(t, filepath.Join(a, ".airlock", "prompts", "write-docs.md"), "Write them.\n")

	complete := func(args ...string) []string {
		t.Helper()
		code, stdout, stderr := w.cli(a, append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("__complete %v: exit %d: %s", args, code, stderr)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if !strings.HasPrefix(l, ":") { // the directive line
				got = append(got, strings.SplitN(l, "\t", 2)[0])
			}
		}
		return got
	}
	same := func(what string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: completions %q, want %q", what, got, want)
		}
	}
	same("merge", complete("merge", ""), "docs-bbbb2222", "docs", "fix-aaaa1111", "fix")
	same("logs f", complete("logs", "f"), "fix-aaaa1111", "fix")
	same("wait second", complete("wait", "fix", "d"), "docs-bbbb2222", "docs")
	same("diff second", complete("diff", "fix", ""))
	same("rm --all-projects", complete("rm", "--all-projects", "o"), "other-cccc3333", "other")
	same("run", complete("run", ""), "fix-auth", "write-docs")
	same("run --resume", complete("run", "--resume", "d"), "docs-bbbb2222", "docs")

	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, stdout, _ := w.cli(a, "completion", shell)
		if code != 0 || !strings.Contains(stdout, "airlock") {
			t.Errorf("completion %s: exit %d, %d bytes", shell, code, len(stdout))
		}
	}
}

// Whatever a run left, the message after it names the repository its
// branch was written into.
func TestNextStepsNameTheRepository(t *testing.T) {
	for _, r := range []*store.Run{
		{ID: "a-1", Branch: "airlock/a-1", Project: "/repos/a", BaseCommit: "b", Head: "h"},
		{ID: "a-2", Branch: "airlock/a-2", Project: "/repos/a", BaseCommit: "b", Head: "b"},
		{ID: "a-3", Branch: "airlock/a-3", Project: "/repos/a", BaseCommit: "b", Head: "b", Uncommitted: "s"},
	} {
		if got := nextSteps(r); !strings.Contains(got, "branch "+r.Branch+" in /repos/a") {
			t.Errorf("nextSteps(%s) = %q: does not name the repository", r.ID, got)
		}
	}
}
