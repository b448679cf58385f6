package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// A profile picks the model, adds environment and hosts, puts its preamble
// before the prompt and brings the user's own Claude Code instructions and
// commands into the run's home (copies: the run cannot change the user's).
func TestProfile(t *testing.T) {
	e := newEnv(t)
	home := e.tempDir()
	for name, content := range map[string]string{
		".claude/CLAUDE.md":       "CLAUDE-MD-MARK: always answer in English.\n",
		".claude/commands/fix.md": "COMMAND-MARK: fix the bug.\n",
	} {
		p := filepath.Join(home, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	userConfig(t, e, `
[profiles.reviewer]
model = "claude-sonnet-4-5-profile"
env = ["PROFILE_MARK=from-profile"]
allow = ["docs.profile.example"]
preamble = "PREAMBLE-MARK: work carefully."
bring = ["instructions", "commands"]
`)
	srv, _ := e.server(testkit.Script{
		Name: "profile",
		Steps: []testkit.Step{{Tool: "Bash", Input: map[string]any{
			"command":     `{ echo "$PROFILE_MARK"; cat ~/.claude/commands/fix.md; } > mark.txt && echo changed >> ~/.claude/CLAUDE.md && git add mark.txt && git commit -qm mark`,
			"description": "Record what the profile gave",
		}}},
		FinalText: "Done.",
	})
	e.extra = append(e.extra, "HOME="+home) // after server, which sets extra

	ls := e.ok("profile", "ls").stdout
	if !strings.Contains(ls, "reviewer") || !strings.Contains(ls, "agent.model") || !strings.Contains(ls, "bring") {
		t.Errorf("profile ls:\n%s", ls)
	}
	if show := e.ok("profile", "show", "reviewer").stdout; !strings.Contains(show, `agent.model = "claude-sonnet-4-5-profile"`) {
		t.Errorf("profile show:\n%s", show)
	}
	if res := e.airlock("run", "-m", "Go.", "--profile", "nope", "-y"); res.code == 0 || !strings.Contains(res.stderr, `no profile "nope"; the profiles are reviewer`) || len(e.runs()) != 0 {
		t.Fatalf("an unknown profile: exit %d, runs %d\n%s", res.code, len(e.runs()), res.stderr)
	}

	res := e.ok("run", "-m", "TASK-MARK: record it.", "--profile", "reviewer", "-y")
	if !strings.Contains(res.stderr, "docs.profile.example") || !strings.Contains(res.stderr, "profile reviewer") {
		t.Errorf("the policy shown lacks the profile's host and where it came from:\n%s", res.stderr)
	}
	var sawModel, sawPreamble, sawInstructions bool
	for _, r := range srv.Requests() {
		sawModel = sawModel || bytes.Contains(r.Body, []byte(`"model":"claude-sonnet-4-5-profile"`))
		sawPreamble = sawPreamble || bytes.Contains(r.Body, []byte("PREAMBLE-MARK: work carefully.\\n\\nTASK-MARK: record it."))
		sawInstructions = sawInstructions || bytes.Contains(r.Body, []byte("CLAUDE-MD-MARK"))
	}
	if !sawModel || !sawPreamble || !sawInstructions {
		t.Errorf("the model saw the profile's model %v, preamble before the prompt %v, the user's CLAUDE.md %v", sawModel, sawPreamble, sawInstructions)
	}
	r := e.onlyRun()
	if got := e.git("show", r.Branch+":mark.txt"); got != "from-profile\nCOMMAND-MARK: fix the bug." {
		t.Errorf("mark.txt = %q", got)
	}
	if data, _ := os.ReadFile(filepath.Join(home, ".claude", "CLAUDE.md")); string(data) != "CLAUDE-MD-MARK: always answer in English.\n" {
		t.Errorf("the run changed the user's own CLAUDE.md: %q", data)
	}
}

// A repository's profiles are anyone's: one that would mount the user's
// files or bring their agent configuration in is refused with the file and
// line, and nothing is made.
func TestRepositoryProfileCannotReachTheHost(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.DemoScript())
	for body, want := range map[string]string{
		"mounts = [\"/etc:/x\"]\n":            "evil.toml:1: profiles.evil.mounts: a repository's own profile may not set this",
		"bring = [\"instructions\"]\n":        "evil.toml:1: profiles.evil.bring: a repository's profile may not bring your own agent configuration",
		"env = [\"AWS_SECRET_ACCESS_KEY\"]\n": "would copy your environment's AWS_SECRET_ACCESS_KEY",
	} {
		p := filepath.Join(e.repo, ".airlock", "profiles", "evil.toml")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		res := e.airlock("run", "-m", "Go.", "--profile", "evil", "-y")
		if res.code == 0 || !strings.Contains(res.stderr, want) {
			t.Errorf("profile %q: exit %d, want %q in:\n%s", body, res.code, want, res.stderr)
		}
		if n := len(e.runs()); n != 0 {
			t.Fatalf("a refused profile made %d runs", n)
		}
	}
}
