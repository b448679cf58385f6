package agent

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
	"github.com/airlock-dev/airlock/internal/transcript"
)

func TestCodexRegistered(t *testing.T) {
	a, err := Lookup("codex")
	if err != nil || a.Name() != "codex" || a.Title() != "Codex CLI" || a.DefaultVersion() != CodexVersion {
		t.Fatalf("Lookup(codex) = %v, %v", a, err)
	}
	if !strings.Contains(a.Install("1.2.3"), "npm install -g --no-fund --no-audit @openai/codex@1.2.3 ") || !strings.Contains(a.Install("1.2.3"), "codex --version") {
		t.Errorf("Install = %q", a.Install("1.2.3"))
	}
	if allow := a.DefaultAllow(); len(allow) != 0 {
		t.Errorf("DefaultAllow = %q, want nothing: Codex needs no host but the proxy's endpoint", allow)
	}
	if !IsSecretName("OPENAI_API_KEY") {
		t.Errorf("OPENAI_API_KEY is not secret")
	}
}

func TestCodexCommand(t *testing.T) {
	o := Options{PromptPath: "/airlock/prompt.md", LogPath: "/airlock/log/agent.jsonl", StderrPath: "/airlock/log/stderr", SessionID: "s1", MaxTurns: 3}
	head := []string{"/bin/sh", "-c", codexScript, "airlock-agent", o.PromptPath, o.LogPath, o.StderrPath}
	flags := []string{"--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check"}
	tests := []struct {
		name string
		o    func(Options) Options
		want []string
	}{
		{"new", func(o Options) Options { return o }, append(append(append(head, "exec"), flags...), "-")},
		{"model", func(o Options) Options { o.Model = "-x"; return o }, append(append(append(head, "exec"), flags...), "--model=-x", "-")},
		{"resume", func(o Options) Options { o.Resume = true; return o }, append(append(append(head, "exec", "resume"), flags...), "--last", "-")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Codex{}).Command(tt.o(o)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := (Codex{}).Interactive(Options{Model: "m"}); !reflect.DeepEqual(got, []string{"codex", "--dangerously-bypass-approvals-and-sandbox", "--model=m"}) {
		t.Errorf("Interactive = %q", got)
	}
}

func TestCodexAPI(t *testing.T) {
	env := map[string]string{"OPENAI_API_KEY": " sk-proj-real \n"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c := Codex{}
	if !c.HasCredentials(lookup) {
		t.Fatal("HasCredentials = false with a key")
	}
	a, err := c.API(lookup)
	if err != nil {
		t.Fatal(err)
	}
	if a.Headers["Authorization"] != "Bearer sk-proj-real" || a.Secret != "sk-proj-real" || a.Usage != "openai-responses" || a.Upstream != "https://api.openai.com/v1" || a.GatewayEnv != "OPENAI_BASE_URL" {
		t.Errorf("API = %+v", a)
	}
	if !reflect.DeepEqual(a.Env, []string{"OPENAI_API_KEY=" + PlaceholderOpenAIKey}) || strings.Contains(strings.Join(a.Env, " "), "real") {
		t.Errorf("the sandbox's env %q", a.Env)
	}
	if len(a.Routes) == 0 || a.Routes[0] != (Route{Method: "POST", Path: "/responses", Metered: true}) {
		t.Errorf("routes %+v", a.Routes)
	}
	for _, h := range []string{"Authorization", "OpenAI-Organization", "OpenAI-Project"} {
		if !strings.Contains(strings.Join(a.Strip, ","), h) {
			t.Errorf("%s is not stripped: %q", h, a.Strip)
		}
	}
	for _, e := range (Codex{}).Env(Options{}) {
		if strings.Contains(e, "KEY") {
			t.Errorf("Env carries a credential: %s", e)
		}
	}
	env = map[string]string{"OPENAI_API_KEY": "  "}
	if c.HasCredentials(lookup) {
		t.Error("HasCredentials = true with a blank key")
	}
	if _, err := c.API(lookup); err == nil || !strings.Contains(err.Error(), "OPENAI_API_KEY") {
		t.Errorf("API without a key: %v", err)
	}
}

func TestCodexSeed(t *testing.T) {
	home := t.TempDir()
	if err := (Codex{}).Seed(home, SeedOptions{Workdir: "/workspace", Model: `a"b\c` + "\n"}, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(home, ".codex", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	for _, want := range []string{
		`model = "a\"b\\c\u000A"`,
		`model_provider = "airlock"`,
		`base_url = "http://127.0.0.1:3129"`,
		`env_key = "OPENAI_API_KEY"`,
		`wire_api = "responses"`,
		"plugins = false",
		"check_for_update_on_startup = false",
		"daemon_auto_start = false",
		"in_app_updates = false",
		"[analytics]\nenabled = false",
		`[projects."/workspace"]`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config.toml lacks %q:\n%s", want, cfg)
		}
	}
	if fi, _ := os.Stat(filepath.Join(home, ".codex", "config.toml")); fi.Mode().Perm() != 0o600 {
		t.Errorf("config.toml mode %v", fi.Mode())
	}
}

// A resumed run's home is the agent's: what it left at the config's path
// (a file of its own, a link out of the home) is replaced, and nothing
// outside the home is written.
func TestCodexSeedOverHostileHome(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("host file\n"), 0o600)
	tests := []struct {
		name  string
		plant func(home string)
		ok    bool
	}{
		{"own config", func(home string) {
			os.MkdirAll(filepath.Join(home, ".codex"), 0o700)
			os.WriteFile(filepath.Join(home, ".codex", "config.toml"), []byte("model_provider = \"evil\"\n"), 0o600)
		}, true},
		{"config is a link out", func(home string) {
			os.MkdirAll(filepath.Join(home, ".codex"), 0o700)
			os.Symlink(outside, filepath.Join(home, ".codex", "config.toml"))
		}, true},
		{"directory is a link out", func(home string) {
			os.Symlink(filepath.Dir(outside), filepath.Join(home, ".codex"))
		}, false},
		{"temporary file is a link out", func(home string) {
			os.MkdirAll(filepath.Join(home, ".codex"), 0o700)
			os.Symlink(outside, filepath.Join(home, ".codex", ".airlock-config.toml.tmp"))
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			tt.plant(home)
			err := (Codex{}).Seed(home, SeedOptions{Workdir: "/workspace"}, os.Getuid(), os.Getgid())
			if got, _ := os.ReadFile(outside); string(got) != "host file\n" {
				t.Fatalf("the file outside the home was changed: %q", got)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(outside), "config.toml")); err == nil {
				t.Fatalf("a config was written outside the home")
			}
			if (err == nil) != tt.ok {
				t.Fatalf("Seed: %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			fi, err := os.Lstat(filepath.Join(home, ".codex", "config.toml"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("config.toml is %v, %v; want a regular file", fi, err)
			}
			if data, _ := os.ReadFile(filepath.Join(home, ".codex", "config.toml")); !bytes.Contains(data, []byte(`model_provider = "airlock"`)) {
				t.Errorf("config.toml:\n%s", data)
			}
		})
	}
}

// TestCodexCommandDrivesRealCLI runs the exact argv Command builds (the
// /bin/sh script, the prompt file on standard input) with the config Seed
// writes, against the scripted Responses server, with the real Codex CLI
// on the host: the config is one Codex accepts (--strict-config), and the
// transcript is what ParseLine reads.
func TestCodexCommandDrivesRealCLI(t *testing.T) {
	if _, err := exec.LookPath("codex"); err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("AIRLOCK_REQUIRE_CODEX") == "1" {
			t.Fatalf("codex not on PATH (needed with CI=true or AIRLOCK_REQUIRE_CODEX=1): scripts/setup.sh installs it")
		}
		t.Skip("codex not on PATH; set AIRLOCK_REQUIRE_CODEX=1 to make this a failure")
	}
	srv := testkit.NewResponsesServer(testkit.CodexDemoScript())
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	home, work, logs := t.TempDir(), t.TempDir(), t.TempDir()
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"commit", "-q", "--allow-empty", "-m", "initial"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "HOME="+home, "GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.invalid", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.invalid")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	seed := func(home string) {
		t.Helper()
		if err := (Codex{}).Seed(home, SeedOptions{Workdir: work}, os.Getuid(), os.Getgid()); err != nil {
			t.Fatal(err)
		}
		// The sandbox's endpoint is the proxy's; here it is the server itself.
		cfgPath := filepath.Join(home, ".codex", "config.toml")
		cfg, _ := os.ReadFile(cfgPath)
		cfg = bytes.Replace(cfg, []byte(`"`+APIBaseURL+`"`), []byte(`"`+base+`"`), 1)
		os.WriteFile(cfgPath, cfg, 0o600)
	}
	// run runs Command's argv as the container would, with home as
	// /home/agent, and returns the transcript's events.
	run := func(home string, o Options) []transcript.Event {
		t.Helper()
		argv := Codex{}.Command(o)
		argv = append(argv[:len(argv)-1], "--strict-config", "-")
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = work
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "OPENAI_API_KEY=sk-proj-host-test",
			"GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.invalid", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.invalid"}
		for _, e := range (Codex{}).Env(o) {
			name, value, _ := strings.Cut(e, "=")
			value = strings.ReplaceAll(value, "/home/agent", home)
			cmd.Env = append(cmd.Env, name+"="+value)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			stderr, _ := os.ReadFile(o.StderrPath)
			t.Fatalf("codex: %v\n%s\nstderr:\n%s", err, out, stderr)
		}
		data, err := os.ReadFile(o.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		var evs []transcript.Event
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			got, err := Codex{}.ParseLine(line)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			evs = append(evs, got...)
		}
		return evs
	}

	seed(home)
	prompt := filepath.Join(logs, "prompt.md")
	os.WriteFile(prompt, []byte("Write hello.py, run it and commit it.\n"), 0o600)
	o := Options{PromptPath: prompt, LogPath: filepath.Join(logs, "agent.jsonl"), StderrPath: filepath.Join(logs, "stderr")}
	evs := run(home, o)
	var tools []string
	var final string
	for _, ev := range evs {
		switch ev.Kind {
		case transcript.KindToolUse:
			tools = append(tools, ev.Tool+" "+string(ev.ToolInput))
		case transcript.KindText:
			final = ev.Text
		}
	}
	if len(tools) != 3 || !strings.HasPrefix(tools[0], "apply_patch") || !strings.Contains(tools[1], "python3 hello.py") || !strings.Contains(tools[2], "git commit") {
		t.Errorf("tool calls %q", tools)
	}
	if final != testkit.CodexDemoScript().FinalText {
		t.Errorf("final text %q", final)
	}
	for _, r := range srv.Requests() {
		if r.Path != "/v1/responses" || r.APIKey() != "sk-proj-host-test" {
			t.Errorf("request %s with key %q", r.Path, r.APIKey())
		}
	}

	// Resume: a fresh home holding only SessionDir (and the seeded
	// config) continues the same thread, whole.
	home2 := t.TempDir()
	seed(home2)
	if out, err := exec.Command("cp", "-a", filepath.Join(home, Codex{}.SessionDir()), filepath.Join(home2, Codex{}.SessionDir())).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	os.WriteFile(prompt, []byte("Now say what you did.\n"), 0o600)
	o.Resume, o.LogPath = true, filepath.Join(logs, "resumed.jsonl")
	resumed := run(home2, o)
	if resumed[0].Kind != transcript.KindInit || resumed[0].SessionID != evs[0].SessionID {
		t.Errorf("resumed session %+v, want thread %s", resumed[0], evs[0].SessionID)
	}
	reqs := srv.Requests()
	if last := reqs[len(reqs)-1]; len(reqs) != 5 || last.NumToolResults != 3 || !bytes.Contains(last.Body, []byte("Now say what you did.")) || !bytes.Contains(last.Body, []byte("python3 hello.py")) {
		t.Errorf("the resumed request (%d of %d) does not carry the conversation and the new prompt", len(reqs), 5)
	}
}
