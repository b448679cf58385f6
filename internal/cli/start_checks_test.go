package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// startEnv is a user's machine for the commands that start runs: a git
// repository, config, state and credentials in temporary directories, and
// a terminal that answers "y" to every question.
type startEnv struct {
	repo, state string
	out, errOut *bytes.Buffer
	f           *Factory
}

func newStartEnv(t *testing.T, commits bool) *startEnv {
	t.Helper()
	home := t.TempDir()
	e := &startEnv{repo: filepath.Join(t.TempDir(), "repo"), state: filepath.Join(home, "state"), out: &bytes.Buffer{}, errOut: &bytes.Buffer{}}
	environ := []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"XDG_STATE_HOME=" + e.state,
		"ANTHROPIC_API_KEY=sk-ant-test-" + t.Name(),
		"PATH=" + os.Getenv("PATH"),
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		environ = append(environ, "DOCKER_HOST="+h) // which engine to use: the test's
	}
	gitEnv := append(environ, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = e.repo, gitEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if err := os.MkdirAll(e.repo, 0o755); err != nil {
		t.Fatal(err)
	}
	git("init", "-q", "-b", "main")
	if commits {
		e.write(t, "README.md", "# project\n")
		git("add", ".")
		git("-c", "user.name=T", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "initial")
	}
	getenv := func(name string) string {
		for _, kv := range environ {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				return v
			}
		}
		return ""
	}
	e.f = &Factory{
		IO:      &IOStreams{In: strings.NewReader("y\ny\ny\n"), Out: e.out, ErrOut: e.errOut, StdinTTY: true},
		Getenv:  getenv,
		Environ: func() []string { return environ },
		Now:     time.Now,
		Getwd:   func() (string, error) { return e.repo, nil },
		UID:     os.Getuid(),
		GID:     os.Getgid(),
	}
	return e
}

func (e *startEnv) write(t *testing.T, rel, content string) string {
	t.Helper()
	path := filepath.Join(e.repo, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// airlock runs a command line the way Main does, returning its error.
func (e *startEnv) airlock(args ...string) error {
	cmd := NewRootCmd(e.f)
	cmd.SetArgs(args)
	cmd.SetOut(e.out)
	cmd.SetErr(e.errOut)
	return cmd.ExecuteContext(context.Background())
}

// nothingStarted fails the test if the command asked for confirmation or
// created a run.
func (e *startEnv) nothingStarted(t *testing.T) {
	t.Helper()
	if strings.Contains(e.errOut.String(), "[y/N]") {
		t.Errorf("asked to confirm before refusing:\n%s", e.errOut)
	}
	runs, _ := os.ReadDir(filepath.Join(e.state, "airlock", "runs"))
	if len(runs) > 0 {
		t.Errorf("created %d run(s)", len(runs))
	}
}

// engineReachable skips a test that needs the real container engine.
func engineReachable(t *testing.T) {
	t.Helper()
	d, err := sandbox.NewDocker()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = d.Ping(ctx)
		d.Close()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI needs the container engine (scripts/setup.sh starts it): ", err)
		}
		t.Skip("no container engine: ", err)
	}
}

// Everything a run, a batch or a shell needs is checked before the y/N
// question and before anything is created, with one error that says what
// is wrong and where.
func TestStartChecksComeFirst(t *testing.T) {
	tests := []struct {
		name    string
		commits bool // the repository has a first commit
		files   map[string]string
		args    []string
		engine  string // "down": DOCKER_HOST points at nothing; "real": needs the engine
		want    []string
	}{
		{name: "bad --branch", commits: true, args: []string{"run", "-m", "Fix it.", "--branch", "no-such-branch"},
			want: []string{`--branch: base not found: "no-such-branch" is not a branch, tag or commit in `}},
		{name: "bad branch in the prompt", commits: true, files: map[string]string{".airlock/prompts/fix.md": "---\nbranch: relase\n---\nFix it.\n"},
			args: []string{"run", "fix"}, want: []string{"fix.md:2: branch: base not found: \"relase\" is not a branch"}},
		{name: "no commits", args: []string{"run", "-m", "Fix it."},
			want: []string{"repository has no commits: make a first commit before running an agent"}},
		{name: "no commits, shell", args: []string{"shell", "-d"},
			want: []string{"repository has no commits"}},
		{name: "batch, one bad branch", commits: true,
			files: map[string]string{".airlock/prompts/a.md": "Do a.\n", ".airlock/prompts/b.md": "---\nbranch: nope\n---\nDo b.\n"},
			args:  []string{"run", "a", "b"}, want: []string{"task b: ", `b.md:2: branch: base not found: "nope"`}},
		{name: "engine unreachable", commits: true, engine: "down", args: []string{"run", "-m", "Fix it."},
			want: []string{"container engine unreachable", "unix:///nonexistent/airlock-test.sock"}},
		{name: "engine unreachable, shell", commits: true, engine: "down", args: []string{"shell", "-d"},
			want: []string{"container engine unreachable"}},
		{name: "engine unreachable, batch", commits: true, engine: "down",
			files: map[string]string{".airlock/prompts/a.md": "Do a.\n", ".airlock/prompts/b.md": "Do b.\n"},
			args:  []string{"run", "a", "b"}, want: []string{"task a: ", "container engine unreachable"}},
		{name: "missing image", commits: true, engine: "real", args: []string{"run", "-m", "Fix it.", "--image", "airlock-test-missing:none"},
			want: []string{"image airlock-test-missing:none not found in the container engine: pull or build it"}},
		{name: "missing image, shell", commits: true, engine: "real", args: []string{"shell", "-d", "--image", "airlock-test-missing:none"},
			want: []string{"image airlock-test-missing:none not found"}},
		{name: "missing image, batch", commits: true, engine: "real",
			files: map[string]string{".airlock/prompts/a.md": "Do a.\n", ".airlock/prompts/b.md": "---\nimage: airlock-test-missing:none\n---\nDo b.\n"},
			args:  []string{"run", "b", "a"}, want: []string{"task b: image airlock-test-missing:none not found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch tt.engine {
			case "down":
				t.Setenv("DOCKER_HOST", "unix:///nonexistent/airlock-test.sock")
			case "real":
				engineReachable(t)
			}
			e := newStartEnv(t, tt.commits)
			for rel, content := range tt.files {
				e.write(t, rel, content)
			}
			err := e.airlock(tt.args...)
			if err == nil {
				t.Fatal("the command succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
			e.nothingStarted(t)
		})
	}
}

// What is not a prompt is refused, naming the file (and line and byte),
// before anything is asked or created.
func TestPromptContentRefused(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		args  []string
		want  string
		usage bool // a flag error (exit 2)
	}{
		{name: "whitespace-only -m", args: []string{"run", "-m", " \t\n "}, want: "-m: the prompt is empty (only white space)", usage: true},
		{name: "empty -m", args: []string{"run", "-m", ""}, want: "-m: the prompt is empty", usage: true},
		{name: "empty --name", args: []string{"run", "-m", "Fix it.", "--name", ""}, want: "--name: run name is empty", usage: true},
		{name: "empty --name, shell", args: []string{"shell", "-d", "--name", ""}, want: "--name: run name is empty", usage: true},
		{name: "whitespace-only -m, start", args: []string{"start", "some-run", "-m", "\n \n"}, want: "-m: the prompt is empty (only white space)", usage: true},
		{name: "NUL byte", files: map[string]string{".airlock/prompts/nul.md": "Fix\nit\x00."}, args: []string{"run", "nul"},
			want: ".airlock/prompts/nul.md:2: NUL byte at byte offset 6"},
		{name: "binary file", files: map[string]string{"logo.png": "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"}, args: []string{"run", "logo.png"},
			want: "logo.png:3: NUL byte at byte offset 8: this is a binary file"},
		{name: "not UTF-8", files: map[string]string{".airlock/prompts/latin1.md": "caf\xe9\n"}, args: []string{"run", "latin1"},
			want: "latin1.md:1: invalid UTF-8 at byte offset 3 (0xe9)"},
		{name: "64 MiB", files: map[string]string{"huge.md": ""}, args: []string{"run", "huge.md"},
			want: "huge.md: the prompt is 64.0 MiB, more than the 1.0 MiB a prompt may be"},
		{name: "batch with a binary task", files: map[string]string{".airlock/prompts/a.md": "Do a.\n", ".airlock/prompts/b.md": "b\x00"},
			args: []string{"run", "a", "b"}, want: "task b: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newStartEnv(t, true)
			for rel, content := range tt.files {
				path := e.write(t, rel, content)
				if rel == "huge.md" {
					if err := os.Truncate(path, 64<<20); err != nil {
						t.Fatal(err)
					}
				}
			}
			err := e.airlock(tt.args...)
			if err == nil {
				t.Fatal("the command succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
			var fe *FlagError
			if tt.usage != errors.As(err, &fe) {
				t.Errorf("error %q: a usage error is %v, want %v", err, !tt.usage, tt.usage)
			}
			e.nothingStarted(t)
		})
	}
}

// `airlock run docs.md` is the project's .airlock/prompts/docs.md, as
// `airlock run docs` is; a name that fits two files is refused, naming both.
func TestPromptLookup(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		task  string
		want  string // the file loaded, relative to the repository
		err   string
	}{
		{"name", []string{".airlock/prompts/docs.md"}, "docs", ".airlock/prompts/docs.md", ""},
		{"name with .md", []string{".airlock/prompts/docs.md"}, "docs.md", ".airlock/prompts/docs.md", ""},
		{"path", []string{"tasks/upgrade.md"}, "tasks/upgrade.md", "tasks/upgrade.md", ""},
		{"explicit path", []string{"docs.md", ".airlock/prompts/docs.md"}, "./docs.md", "docs.md", ""},
		{"ambiguous", []string{"docs.md", ".airlock/prompts/docs.md"}, "docs.md", "",
			`prompt "docs.md" is ambiguous: it names both `},
		{"missing", nil, "docs.md", "", `no prompt "docs.md": looked for `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newStartEnv(t, true)
			for _, rel := range tt.files {
				e.write(t, rel, "Task from "+rel+"\n")
			}
			p, err := e.f.loadPrompt(e.repo, runOptions{Task: tt.task})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := "Task from " + tt.want; p.Body != want {
				t.Errorf("loaded %q (%s), want %q", p.Body, p.Path, want)
			}
			if tt.task == "docs.md" && p.Name != "docs" {
				t.Errorf("run name %q, want docs", p.Name)
			}
		})
	}
}

// -j: all of a batch at once unless -j N, as the help says.
func TestBatchJobsDefaultAll(t *testing.T) {
	cmd := newRunCmd(&Factory{IO: &IOStreams{}})
	fl := cmd.Flags().Lookup("jobs")
	if fl.DefValue != "0" || !strings.Contains(fl.Usage, "(default: all)") {
		t.Errorf("-j defaults to %s (%q), want 0, all", fl.DefValue, fl.Usage)
	}
	if !strings.Contains(cmd.Long, "at most -j at once (default:\nall)") {
		t.Error("run's help no longer says -j defaults to all")
	}
	for _, tt := range []struct{ j, n, want int }{{0, 3, 3}, {1, 3, 1}, {2, 3, 2}, {5, 3, 3}} {
		if got := batchJobs(tt.j, tt.n); got != tt.want {
			t.Errorf("batchJobs(-j %d, %d tasks) = %d, want %d", tt.j, tt.n, got, tt.want)
		}
	}
}

func TestResumeRefusesBranch(t *testing.T) {
	e := newStartEnv(t, true)
	for _, args := range [][]string{
		{"run", "-m", "Go on.", "--resume", "x", "--branch", "main"},
		{"shell", "-d", "--resume", "x", "--branch", "main"},
	} {
		err := e.airlock(args...)
		var fe *FlagError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), "--branch and --resume") {
			t.Errorf("%v: error %v, want a usage error about --branch and --resume", args, err)
		}
	}
	e.nothingStarted(t)
}
