package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
	"github.com/airlock-dev/airlock/internal/transcript"
)

// The transcripts in testdata were written by the real Gemini CLI 0.61.0
// against testkit's scripted Gemini API (paths replaced by /workspace).

func parseGeminiFile(t *testing.T, name string) []transcript.Event {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var evs []transcript.Event
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		got, err := Gemini{}.ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(%s): %v", line, err)
		}
		evs = append(evs, got...)
	}
	return evs
}

func TestGeminiParseSuccess(t *testing.T) {
	evs := parseGeminiFile(t, "gemini_success.jsonl")
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, string(ev.Kind))
	}
	want := "init unknown text text tool_use tool_result text text tool_use tool_result text text tool_use tool_result text text result"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("kinds\n got %s\nwant %s", got, want)
	}
	if ev := evs[0]; ev.SessionID != "3bbfa8f1-ced6-4b9b-8d07-46f5bd270703" || ev.Model != "gemini-2.5-flash" {
		t.Errorf("init = %+v", ev)
	}
	if ev := evs[2]; ev.Text != "I'll create a sma" || ev.Subtype != "delta" {
		t.Errorf("first text piece = %q subtype %q", ev.Text, ev.Subtype)
	}
	w := evs[4]
	var in map[string]string
	if err := json.Unmarshal(w.ToolInput, &in); err != nil {
		t.Fatal(err)
	}
	if w.Tool != "write_file" || w.ToolUseID == "" || in["file_path"] != "/workspace/hello.py" || in["content"] != "print(\"Hello from airlock\")\n" {
		t.Errorf("tool_use = %+v (%+v)", w, in)
	}
	if r := evs[9]; r.ToolUseID != evs[8].ToolUseID || r.ToolResult != "Hello from airlock" || r.IsError {
		t.Errorf("tool_result = %+v", r)
	}
	res := evs[len(evs)-1]
	want2 := transcript.Usage{Input: 31029, Output: 222, CacheRead: 18795}
	if res.IsError || res.Subtype != "success" || res.Usage == nil || *res.Usage != want2 || res.Duration != 1276*time.Millisecond {
		t.Errorf("result = %+v usage %+v", res, res.Usage)
	}
}

func TestGeminiParseErrors(t *testing.T) {
	evs := parseGeminiFile(t, "gemini_tool_error.jsonl")
	var failed []transcript.Event
	for _, ev := range evs {
		if ev.Kind == transcript.KindToolResult && ev.IsError {
			failed = append(failed, ev)
		}
	}
	if len(failed) != 1 || !strings.Contains(failed[0].ToolResult, "File not found: /workspace/missing.txt") {
		t.Errorf("failed tool results = %+v", failed)
	}

	evs = parseGeminiFile(t, "gemini_api_error.jsonl")
	res := evs[len(evs)-1]
	if res.Kind != transcript.KindResult || !res.IsError || res.Subtype != "error" || len(res.Errors) != 1 || !strings.Contains(res.Errors[0], "scripted failure") {
		t.Errorf("result = %+v", res)
	}
}

func TestGeminiParseOddLines(t *testing.T) {
	tests := []struct {
		line string
		kind transcript.Kind
		err  bool
	}{
		{`not json`, "", true},
		{``, "", true},
		{`{"type":"something_new","x":1}`, transcript.KindUnknown, false},
		{`{"type":"message","role":"user","content":"hi"}`, transcript.KindUnknown, false},
		{`{"type":"message","role":"assistant","content":42}`, transcript.KindUnknown, false},
		{`{"type":"error","severity":"error","message":"Loop detected"}`, transcript.KindSystem, false},
		{`{"type":"result","status":"success","stats":{"input_tokens":-5,"output_tokens":-1,"cached":-3,"duration_ms":-9}}`, transcript.KindResult, false},
	}
	for _, tt := range tests {
		evs, err := Gemini{}.ParseLine([]byte(tt.line))
		if tt.err {
			if !errors.Is(err, transcript.ErrNotJSON) {
				t.Errorf("ParseLine(%q) error %v, want ErrNotJSON", tt.line, err)
			}
			continue
		}
		if err != nil || len(evs) != 1 || evs[0].Kind != tt.kind || string(evs[0].Raw) != tt.line {
			t.Errorf("ParseLine(%q) = %+v, %v; want one %s event keeping the line", tt.line, evs, err, tt.kind)
			continue
		}
		if u := evs[0].Usage; u != nil && (u.Input < 0 || u.Output < 0 || u.CacheRead < 0 || evs[0].Duration < 0) {
			t.Errorf("negative counts through: %+v", u)
		}
	}
}

func TestGeminiCommand(t *testing.T) {
	o := Options{Model: "gemini-2.5-flash", SessionID: "11111111-2222-4333-8444-555555555555", PromptPath: "/p", LogPath: "/l", StderrPath: "/e"}
	argv := Gemini{}.Command(o)
	if argv[0] != "/bin/sh" || argv[3] != "airlock-agent" || !slices.Equal(argv[4:7], []string{"/p", "/l", "/e"}) {
		t.Fatalf("argv = %q", argv)
	}
	wantArgs := []string{"--output-format=stream-json", "--approval-mode=yolo", "--skip-trust", "--session-id=" + o.SessionID, "--model=gemini-2.5-flash"}
	if !slices.Equal(argv[7:], wantArgs) {
		t.Errorf("args = %q, want %q", argv[7:], wantArgs)
	}
	o.Resume = true
	if argv := (Gemini{}).Interactive(o); !slices.Contains(argv, "--resume="+o.SessionID) || slices.Contains(argv, "--output-format=stream-json") || argv[0] != "gemini" {
		t.Errorf("interactive = %q", argv)
	}
	for _, kv := range (Gemini{}).Env(o) {
		if strings.Contains(kv, "KEY") {
			t.Errorf("env carries a key: %s", kv)
		}
	}
	if !slices.Contains(Gemini{}.Env(o), "GOOGLE_GEMINI_BASE_URL="+APIBaseURL) {
		t.Errorf("env does not point the CLI at the proxy: %q", Gemini{}.Env(o))
	}
}

func TestGeminiAPI(t *testing.T) {
	lookup := func(env map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	g := Gemini{}
	if g.HasCredentials(lookup(nil)) || g.HasCredentials(lookup(map[string]string{"GEMINI_API_KEY": " "})) {
		t.Error("credentials without a key")
	}
	if _, err := g.API(lookup(nil)); err == nil {
		t.Error("API without a key")
	}
	a, err := g.API(lookup(map[string]string{"GEMINI_API_KEY": " AIza-real \n"}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Headers, map[string]string{"x-goog-api-key": "AIza-real"}) || a.Secret != "AIza-real" || a.Usage != "gemini" {
		t.Errorf("api = %+v", a)
	}
	if !slices.Contains(a.Strip, "X-Goog-Api-Key") || !slices.Contains(a.Strip, "Authorization") {
		t.Errorf("strip = %q", a.Strip)
	}
	for _, kv := range a.Env {
		if strings.Contains(kv, "AIza-real") {
			t.Errorf("sandbox env carries the key: %s", kv)
		}
	}
	if a.Upstream != "https://generativelanguage.googleapis.com" || len(g.DefaultAllow()) != 0 {
		t.Errorf("upstream %q allow %q", a.Upstream, g.DefaultAllow())
	}
	metered := 0
	for _, r := range a.Routes {
		if !strings.HasPrefix(r.Path, "/v1beta/models/*:") || r.Method != "POST" {
			t.Errorf("route %+v", r)
		}
		if r.Metered {
			metered++
		}
	}
	if metered != 2 {
		t.Errorf("routes %+v: want streamGenerateContent and generateContent metered", a.Routes)
	}
}

func TestGeminiSeed(t *testing.T) {
	home := t.TempDir()
	if err := (Gemini{}).Seed(home, SeedOptions{Workdir: "/workspace"}, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(home, ".gemini", "settings.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Security struct {
			Auth        struct{ SelectedType string }
			FolderTrust struct{ Enabled *bool }
		}
		Privacy   struct{ UsageStatisticsEnabled *bool }
		Telemetry struct{ Enabled *bool }
		General   struct{ EnableAutoUpdate, EnableAutoUpdateNotification *bool }
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	off := func(b *bool) bool { return b != nil && !*b }
	if s.Security.Auth.SelectedType != "gemini-api-key" || !off(s.Security.FolderTrust.Enabled) || !off(s.Privacy.UsageStatisticsEnabled) ||
		!off(s.Telemetry.Enabled) || !off(s.General.EnableAutoUpdate) || !off(s.General.EnableAutoUpdateNotification) {
		t.Errorf("settings.json = %s", data)
	}
	if fi, _ := os.Stat(filepath.Join(home, ".gemini", "settings.json")); fi.Mode().Perm() != 0o600 {
		t.Errorf("settings.json mode %v", fi.Mode())
	}
}

// A resumed run's home is the agent's: what it left at the settings' path
// (its own settings, a link out of the home) is replaced, and nothing
// outside the home is read into it or written.
func TestGeminiSeedOverHostileHome(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "victim.json")
	const victim = `{"secret":"host file"}` + "\n"
	os.WriteFile(outside, []byte(victim), 0o600)
	tests := []struct {
		name  string
		plant func(home string)
		ok    bool
	}{
		{"own settings", func(home string) {
			os.MkdirAll(filepath.Join(home, ".gemini"), 0o700)
			os.WriteFile(filepath.Join(home, ".gemini", "settings.json"), []byte(`{"security":{"auth":{"selectedType":"oauth-personal"}},"tools":{"discoveryCommand":"evil"}}`), 0o600)
		}, true},
		{"settings is a link out", func(home string) {
			os.MkdirAll(filepath.Join(home, ".gemini"), 0o700)
			os.Symlink(outside, filepath.Join(home, ".gemini", "settings.json"))
		}, true},
		{"directory is a link out", func(home string) {
			os.Symlink(filepath.Dir(outside), filepath.Join(home, ".gemini"))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			tt.plant(home)
			err := (Gemini{}).Seed(home, SeedOptions{Workdir: "/workspace"}, os.Getuid(), os.Getgid())
			if got, _ := os.ReadFile(outside); string(got) != victim {
				t.Fatalf("the file outside the home was changed: %q", got)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(outside), "settings.json")); err == nil {
				t.Fatalf("settings were written outside the home")
			}
			if (err == nil) != tt.ok {
				t.Fatalf("Seed: %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			fi, err := os.Lstat(filepath.Join(home, ".gemini", "settings.json"))
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("settings.json is %v, %v; want a regular file", fi, err)
			}
			data, _ := os.ReadFile(filepath.Join(home, ".gemini", "settings.json"))
			if !bytes.Contains(data, []byte(`"gemini-api-key"`)) || bytes.Contains(data, []byte("evil")) || bytes.Contains(data, []byte("host file")) {
				t.Errorf("settings.json:\n%s", data)
			}
		})
	}
}

// A Gemini transcript summarizes like any other: the final answer is the
// text after the last tool call, its pieces joined; usage and outcome come
// from the result line.
func TestGeminiSummary(t *testing.T) {
	for _, tt := range []struct {
		file, outcome, result, errText string
	}{
		{"gemini_success.jsonl", transcript.OutcomeSucceeded, `Created hello.py, which prints "Hello from airlock", and committed it.`, ""},
		{"gemini_tool_error.jsonl", transcript.OutcomeSucceeded, `Created hello.py, which prints "Hello from airlock", and committed it.`, ""},
		{"gemini_api_error.jsonl", transcript.OutcomeFailed, "", "scripted failure"},
	} {
		f, err := os.Open(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		s, err := transcript.SummarizeWith(f, Gemini{}.ParseLine)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if s.Outcome != tt.outcome || s.Result != tt.result || !strings.Contains(s.ErrorText, tt.errText) || s.Model != "gemini-2.5-flash" || s.SessionID == "" {
			t.Errorf("%s: summary = %+v", tt.file, s)
		}
		if tt.outcome == transcript.OutcomeSucceeded && (s.InputTokens == 0 || s.OutputTokens == 0 || s.CacheRead == 0 || s.Duration == 0) {
			t.Errorf("%s: usage not summed: %+v", tt.file, s)
		}
	}
}

// TestGeminiCommandDrivesRealCLI runs the exact argv Command builds (the
// /bin/sh script, the prompt file on standard input) with the settings
// Seed writes and Env's variables, against the scripted Gemini API, with
// the real Gemini CLI on the host (PATH, or $AIRLOCK_GEMINI_CLI): the
// settings are ones the CLI accepts, the transcript is what ParseLine
// reads, and a fresh home holding only SessionDir continues the session.
func TestGeminiCommandDrivesRealCLI(t *testing.T) {
	path := os.Getenv("PATH")
	if cli := os.Getenv("AIRLOCK_GEMINI_CLI"); cli != "" {
		path = filepath.Dir(cli) + ":" + path
	} else if _, err := exec.LookPath("gemini"); err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("AIRLOCK_REQUIRE_GEMINI") == "1" {
			t.Fatalf("gemini not on PATH (needed with CI=true or AIRLOCK_REQUIRE_GEMINI=1): npm install -g @google/gemini-cli@%s (Node >= 20)", GeminiVersion)
		}
		t.Skip("gemini not on PATH (or $AIRLOCK_GEMINI_CLI); set AIRLOCK_REQUIRE_GEMINI=1 to make this a failure")
	}
	work, logs := t.TempDir(), t.TempDir()
	srv := testkit.NewGeminiServer(testkit.GeminiDemoScript(work))
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	gitEnv := []string{"GIT_AUTHOR_NAME=a", "GIT_AUTHOR_EMAIL=a@example.invalid", "GIT_COMMITTER_NAME=a", "GIT_COMMITTER_EMAIL=a@example.invalid", "GIT_CONFIG_NOSYSTEM=1"}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"commit", "-q", "--allow-empty", "-m", "initial"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = work
		cmd.Env = append([]string{"PATH=" + path, "HOME=" + logs}, gitEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run := func(home string, o Options) []transcript.Event {
		t.Helper()
		if err := (Gemini{}).Seed(home, SeedOptions{Workdir: work}, os.Getuid(), os.Getgid()); err != nil {
			t.Fatal(err)
		}
		argv := Gemini{}.Command(o)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = work
		cmd.Env = append([]string{"PATH=" + path, "GEMINI_API_KEY=" + GeminiPlaceholder}, gitEnv...)
		for _, e := range (Gemini{}).Env(o) {
			name, value, _ := strings.Cut(e, "=")
			value = strings.ReplaceAll(value, "/home/agent", home)
			value = strings.ReplaceAll(value, APIBaseURL, base) // the proxy, here the server itself
			cmd.Env = append(cmd.Env, name+"="+value)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			stderr, _ := os.ReadFile(o.StderrPath)
			t.Fatalf("gemini: %v\n%s\nstderr:\n%s", err, out, stderr)
		}
		stderr, _ := os.ReadFile(o.StderrPath)
		if bytes.Contains(stderr, []byte("Invalid configuration")) || bytes.Contains(stderr, []byte("deprecated")) {
			t.Errorf("the CLI complains about the seeded settings:\n%s", stderr)
		}
		data, err := os.ReadFile(o.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		var evs []transcript.Event
		for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
			got, err := Gemini{}.ParseLine(line)
			if err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			evs = append(evs, got...)
		}
		return evs
	}

	home := t.TempDir()
	prompt := filepath.Join(logs, "prompt.md")
	os.WriteFile(prompt, []byte("Write hello.py, run it and commit it.\n"), 0o600)
	o := Options{Model: "gemini-2.5-flash", SessionID: NewSessionID(), PromptPath: prompt, LogPath: filepath.Join(logs, "agent.jsonl"), StderrPath: filepath.Join(logs, "stderr")}
	evs := run(home, o)
	var tools []string
	for _, ev := range evs {
		if ev.Kind == transcript.KindToolUse {
			tools = append(tools, ev.Tool+" "+string(ev.ToolInput))
		}
	}
	if len(tools) != 3 || !strings.HasPrefix(tools[0], "write_file") || !strings.Contains(tools[1], "python3 hello.py") || !strings.Contains(tools[2], "git commit") {
		t.Errorf("tool calls %q", tools)
	}
	if evs[0].Kind != transcript.KindInit || evs[0].SessionID != o.SessionID || evs[len(evs)-1].Kind != transcript.KindResult || evs[len(evs)-1].IsError {
		t.Errorf("session %+v, result %+v", evs[0], evs[len(evs)-1])
	}
	for _, r := range srv.Requests() {
		if r.APIKey() != GeminiPlaceholder || r.Model != "gemini-2.5-flash" {
			t.Errorf("request %s with key %q", r.Path, r.APIKey())
		}
	}

	// Resume: a fresh home holding only SessionDir continues the session.
	home2 := t.TempDir()
	os.MkdirAll(filepath.Join(home2, filepath.Dir(Gemini{}.SessionDir())), 0o700)
	if out, err := exec.Command("cp", "-a", filepath.Join(home, Gemini{}.SessionDir()), filepath.Join(home2, Gemini{}.SessionDir())).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	os.WriteFile(prompt, []byte("Now say what you did.\n"), 0o600)
	before := len(srv.Requests())
	o.Resume, o.LogPath = true, filepath.Join(logs, "resumed.jsonl")
	resumed := run(home2, o)
	if resumed[0].Kind != transcript.KindInit || resumed[0].SessionID != o.SessionID {
		t.Errorf("resumed session %+v, want %s", resumed[0], o.SessionID)
	}
	reqs := srv.Requests()
	if len(reqs) != before+1 {
		t.Fatalf("the resumed run made %d requests, want 1", len(reqs)-before)
	}
	if last := reqs[len(reqs)-1]; last.NumToolResults != 3 || !bytes.Contains(last.Body, []byte("Now say what you did.")) || !bytes.Contains(last.Body, []byte("python3 hello.py")) {
		t.Errorf("the resumed request does not carry the conversation and the new prompt: %d results, prompt %v, history %v", last.NumToolResults, bytes.Contains(last.Body, []byte("Now say what you did.")), bytes.Contains(last.Body, []byte("python3 hello.py")))
	}
}
