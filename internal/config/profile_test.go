package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A profile layers its settings over the files when asked for, and says
// where each came from; a later layer's profile of the same name replaces
// the earlier one whole.
func TestApplyProfile(t *testing.T) {
	dir := t.TempDir()
	user := write(t, dir, "user/config.toml", `
[agent]
model = "from-user"

[profiles.reviewer]
model = "careful-model"
max_turns = 12
env = ["REVIEW=1"]
allow = ["docs.example.com"]
caches = ["npm"]
setup = ["npm ci"]
mounts = ["`+dir+`:/data"]
preamble = """
Review only; do not change files.
"""
bring = ["instructions", "mcp"]

[profiles.fast]
model = "old"
`)
	project := write(t, dir, "repo/.airlock/config.toml", `
[profiles.fast]
model = "quick-model"
`)
	write(t, dir, "repo/.airlock/profiles/docs.toml", "allow = [\"pkg.go.dev\"]\npreamble = \"Write docs.\"\n")
	r, err := Loader{UserPath: user, ProjectPath: project}.Load()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range r.Profiles() {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"docs", "fast", "reviewer"}) {
		t.Fatalf("profiles = %v", names)
	}
	if r.Config.Agent.Model != "from-user" {
		t.Fatalf("a profile applied before it was asked for: model %q", r.Config.Agent.Model)
	}
	p, err := r.ApplyProfile("reviewer", "flag --profile")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config
	if c.Agent.Model != "careful-model" || c.Agent.MaxTurns != 12 || !slices.Contains(c.Sandbox.Env, "REVIEW=1") ||
		!slices.Contains(c.Egress.Allow, "docs.example.com") || !slices.Equal(c.Sandbox.Caches, []string{"npm"}) ||
		!slices.Contains(c.Sandbox.Setup, "npm ci") || len(c.Sandbox.Mounts) != 1 {
		t.Fatalf("after the profile: %+v %+v %+v", c.Agent, c.Sandbox, c.Egress.Allow)
	}
	if p.Preamble != "Review only; do not change files." || !slices.Equal(p.Bring, []string{"instructions", "mcp"}) {
		t.Fatalf("profile = %+v", p)
	}
	if from := r.From("agent.model"); !strings.HasPrefix(from, "profile reviewer ("+user+":") {
		t.Errorf("agent.model from %q", from)
	}

	r2, _ := Loader{UserPath: user, ProjectPath: project}.Load()
	if _, err := r2.ApplyProfile("fast", "flag --profile"); err != nil || r2.Config.Agent.Model != "quick-model" {
		t.Errorf("the repository's fast profile: model %q, %v", r2.Config.Agent.Model, err)
	}
	if _, err := r2.ApplyProfile("nope", "flag --profile"); err == nil || !strings.Contains(err.Error(), `no profile "nope"; the profiles are docs, fast, reviewer`) {
		t.Errorf("unknown profile: %v", err)
	}
}

// Bad profiles are reported with file and line, whether or not they are
// used, and load nothing.
func TestProfileErrors(t *testing.T) {
	tests := []struct{ name, toml, want string }{
		{"unknown key", "[profiles.x]\nmodle = \"m\"\n", `:2: profiles.x.modle: unknown key; a profile has: agent, allow, bring, caches, deny, env, image, max_turns, model, mounts, preamble, setup`},
		{"bad agent", "[profiles.x]\nagent = \"cursor\"\n", `:2: profiles.x.agent: unknown agent "cursor"`},
		{"bad type", "[profiles.x]\nmax_turns = \"ten\"\n", `:2: profiles.x.max_turns: must be a whole number`},
		{"bad name", "[profiles.X_Y]\nmodel = \"m\"\n", `profile name "X_Y"`},
		{"bad bring", "[profiles.x]\nbring = [\"ssh\"]\n", `:2: profiles.x.bring: unknown item "ssh"`},
		{"not a table", "profiles = 1\n", `profiles must be a table of profiles`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, t.TempDir(), "config.toml", tt.toml)
			_, err := Loader{UserPath: path}.Load()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// A repository's profiles are anyone's: they may not set what its config
// may not, nor bring the user's own agent configuration in.
func TestRepositoryProfilesAreLimited(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"mounts", "mounts = [\"/etc:/x\"]\n", "profiles.x.mounts: a repository's own profile may not set this"},
		{"bring", "bring = [\"instructions\"]\n", "profiles.x.bring: a repository's profile may not bring your own agent configuration"},
		{"env from the user's environment", "env = [\"AWS_SECRET_ACCESS_KEY\"]\n", `would copy your environment's AWS_SECRET_ACCESS_KEY`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			project := write(t, dir, "repo/.airlock/config.toml", "[profiles.x]\n"+tt.body)
			if _, err := (Loader{ProjectPath: project}).Load(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("[profiles.x] in the repository's config: %v, want %q", err, tt.want)
			}
			os.Remove(project)
			file := write(t, dir, "repo/.airlock/profiles/x.toml", tt.body)
			if _, err := (Loader{ProjectPath: project}).Load(); err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), strings.TrimPrefix(tt.want, "profiles.x.")[:20]) {
				t.Errorf(".airlock/profiles/x.toml: %v, want %q", err, tt.want)
			}
			user := write(t, dir, "user/config.toml", "[profiles.x]\n"+strings.ReplaceAll(tt.body, "/etc:/x", filepath.Join(dir, "user")+":/x"))
			if _, err := (Loader{UserPath: user}).Load(); err != nil {
				t.Errorf("the same in the user's config: %v", err)
			}
		})
	}
}
