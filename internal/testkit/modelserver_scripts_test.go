package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runSteps runs a script's Bash steps in dir as Claude Code's Bash tool
// would, without a model.
func runSteps(t *testing.T, s Script, dir string) {
	t.Helper()
	for i, st := range s.Steps {
		if st.Tool != "Bash" {
			t.Fatalf("step %d uses %s; only Bash steps can run here", i, st.Tool)
		}
		cmd := exec.Command("bash", "-c", st.Input.(map[string]any)["command"].(string))
		cmd.Dir = dir
		cmd.Env = gitEnv(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("step %d: %v\n%s", i, err, out)
		}
	}
}

// Each trap PlantScript sets fires when host git runs the matching command
// inside the planted repository: the list a harvest must never trigger.
func TestPlantScriptTrapsFire(t *testing.T) {
	dir := newRepo(t)
	markerDir := t.TempDir()
	marker := filepath.Join(markerDir, "it's ran") // a quote must survive quoting
	runSteps(t, PlantScript(marker), dir)
	if got := git(t, dir, "show", "HEAD:planted.txt"); got != "planted by the airlock test model\n" {
		t.Fatalf("planted.txt committed as %q", got)
	}

	tests := []struct {
		trap string
		args []string // a git command that runs it
	}{
		{"hookspath-pre-commit", nil}, // fired by the script's own commit
		{"hookspath-reference-transaction", []string{"update-ref", "refs/heads/x", "HEAD"}},
		{"hookspath-post-checkout", []string{"checkout", "-q", "-b", "y"}},
		{"core.fsmonitor", []string{"status"}},
		{"filter.x.clean", []string{"add", "-A"}},
		{"filter.x.smudge", []string{"cat-file", "--filters", "HEAD:planted.txt"}},
		{"diff.external", []string{"diff", "HEAD~1", "HEAD"}},
		{"diff.x.textconv", []string{"diff", "--no-ext-diff", "HEAD~1", "HEAD"}},
		{"core.editor", []string{"tag", "-a", "v1"}},
		{"core.sshCommand", []string{"ls-remote", "ssh://example.invalid/repo"}},
	}
	for _, tt := range tests {
		t.Run(tt.trap, func(t *testing.T) {
			if tt.args != nil {
				cmd := exec.Command("git", tt.args...)
				cmd.Dir = dir
				cmd.Env = gitEnv(t)
				_ = cmd.Run() // some fail by design (empty tag message, ssh); the trap is what counts
			}
			if _, err := os.Stat(marker + "-" + tt.trap); err != nil {
				t.Errorf("git %s did not run the %s trap", strings.Join(tt.args, " "), tt.trap)
			}
		})
	}

	t.Run("core.pager", func(t *testing.T) {
		// git pages only to a terminal; script(1) provides one.
		cmd := exec.Command("script", "-qec", "git log -1", "/dev/null")
		cmd.Dir = dir
		cmd.Env = append(gitEnv(t), "TERM=xterm")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Skipf("no pseudo-terminal: %v %s", err, out)
		}
		if _, err := os.Stat(marker + "-core.pager"); err != nil {
			t.Error("git log on a terminal did not run the core.pager trap")
		}
	})

	// The hooks in .git/hooks are shadowed by core.hooksPath; with it unset
	// they run too.
	git(t, dir, "config", "--unset", "core.hooksPath")
	git(t, dir, "update-ref", "refs/heads/z", "HEAD")
	if _, err := os.Stat(marker + "-reference-transaction"); err != nil {
		t.Error(".git/hooks/reference-transaction did not run")
	}
}

func TestPlantScriptTrapsKeepGitWorkingWhereMarkerIsAbsent(t *testing.T) {
	dir := newRepo(t)
	runSteps(t, PlantScript("/nonexistent/airlock/marker"), dir)
	// Inside the sandbox the marker path does not exist; git must still work.
	git(t, dir, "status")
	git(t, dir, "checkout", "-q", "-b", "other")
	git(t, dir, "commit", "-q", "--allow-empty", "-m", "more")
	if got := git(t, dir, "log", "--format=%s", "-3"); got != "more\nAdd planted.txt\nInitial commit\n" {
		t.Errorf("log = %q", got)
	}
}

func TestDemoScriptWritesAbsolutePaths(t *testing.T) {
	tests := []struct{ dir, want string }{
		{"/workspace", "/workspace/hello.py"},
		{"/tmp/x/", "/tmp/x/hello.py"},
	}
	for _, tt := range tests {
		s := DemoScriptIn(tt.dir)
		if got := s.Steps[0].Input.(map[string]any)["file_path"]; got != tt.want {
			t.Errorf("DemoScriptIn(%q) writes %v, want %s", tt.dir, got, tt.want)
		}
	}
	if got := DemoScript().Steps[0].Input.(map[string]any)["file_path"]; got != "/workspace/hello.py" {
		t.Errorf("DemoScript writes %v, want /workspace/hello.py", got)
	}
}
