package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// brief is an event in a line a test can compare.
func ocBrief(ev transcript.Event) string {
	s := string(ev.Kind)
	if ev.Subtype != "" {
		s += "/" + ev.Subtype
	}
	switch ev.Kind {
	case transcript.KindText, transcript.KindResult:
		if ev.Text != "" {
			s += " " + ev.Text
		}
	case transcript.KindToolUse:
		s += fmt.Sprintf(" %s %v %s", ev.Tool, ev.ToolUseID != "", ev.ToolInput)
	case transcript.KindToolResult:
		s += fmt.Sprintf(" %v %q", ev.ToolUseID != "", ev.ToolResult)
	}
	if ev.IsError {
		s += " (error)"
	}
	return s
}

func ocParseFile(t *testing.T, name string, parse func([]byte) ([]transcript.Event, error)) []transcript.Event {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []transcript.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		got, err := parse(sc.Bytes())
		if err != nil {
			t.Fatalf("%s: line %q: %v", name, sc.Text(), err)
		}
		evs = append(evs, got...)
	}
	return evs
}

// The transcripts were recorded from the real opencode 1.18.33 driven by
// testkit.ChatServer (internal/testkit/openai_chat_opencode_test.go).
func TestParseOpencodeTranscripts(t *testing.T) {
	tests := []struct {
		file    string
		want    []string
		outcome string
		tokens  [3]int // input, output, cache read, summed over the model calls
	}{
		{
			file:    "opencode_demo.jsonl",
			outcome: transcript.OutcomeSucceeded,
			tokens:  [3]int{8755, 110, 25216},
			want: []string{
				"system/step_start",
				"text I'll create a small Python script.",
				`tool_use write true {"content":"print(\"Hello from airlock\")\n","filePath":"/tmp/TestChatServerDrivesOpencode3225385414/001/hello.py"}`,
				`tool_result true "Wrote file successfully."`,
				"system/step_finish",
				"system/step_start",
				"text Let me run it.",
				`tool_use bash true {"command":"python3 hello.py","description":"Run hello.py"}`,
				`tool_result true "Hello from airlock\n"`,
				"system/step_finish",
				"system/step_start",
				"text It works. Committing.",
				`tool_use bash true {"command":"git add hello.py && git commit -m \"Add hello.py\"","description":"Commit hello.py"}`,
				"tool_result true \"[main f119e90] Add hello.py\\n 1 file changed, 1 insertion(+)\\n create mode 100644 hello.py\\n\"",
				"system/step_finish",
				"system/step_start",
				`text Created hello.py, which prints "Hello from airlock", and committed it.`,
				"system/step_finish",
				"result/success",
			},
		},
		{
			file:    "opencode_tool_error.jsonl",
			outcome: transcript.OutcomeSucceeded,
			tokens:  [3]int{8472, 28, 8320},
			want: []string{
				"system/step_start",
				`tool_use read true {"filePath":"/tmp/TestChatServerOpencodeToolError2834509215/001/missing.txt"}`,
				`tool_result true "File not found: /tmp/TestChatServerOpencodeToolError2834509215/001/missing.txt" (error)`,
				"system/step_finish",
				"system/step_start",
				"text The file does not exist.",
				"system/step_finish",
				"result/success",
			},
		},
		{
			file:    "opencode_api_error.jsonl",
			want:    []string{"result/error airlock test model: scripted failure (error)"},
			outcome: transcript.OutcomeFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			evs := ocParseFile(t, tt.file, parseOpencodeLine)
			var got []string
			for _, ev := range evs {
				got = append(got, ocBrief(ev))
				if !strings.HasPrefix(ev.SessionID, "ses_") {
					t.Errorf("event %s has session id %q", ocBrief(ev), ev.SessionID)
				}
				if len(ev.Raw) == 0 {
					t.Errorf("event %s lost its line", ocBrief(ev))
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}

			// The summary every agent gets: outcome and summed usage.
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sum, err := transcript.SummarizeWith(f, Opencode{}.ParseLine)
			if err != nil {
				t.Fatal(err)
			}
			if got := [3]int{sum.InputTokens, sum.OutputTokens, sum.CacheRead}; sum.Outcome != tt.outcome || got != tt.tokens {
				t.Errorf("summary: outcome %s tokens %v, want %s %v", sum.Outcome, got, tt.outcome, tt.tokens)
			}
			if tt.outcome == transcript.OutcomeSucceeded && (sum.Result != lastText(tt.want) || sum.Turns != strings.Count(strings.Join(tt.want, "\n"), "step_finish")) {
				t.Errorf("summary: result %q after %d turns", sum.Result, sum.Turns)
			}
			if !strings.HasPrefix(sum.SessionID, "ses_") || sum.Skipped != 0 {
				t.Errorf("summary: session %q, %d lines skipped", sum.SessionID, sum.Skipped)
			}
		})
	}
}

// lastText is the text of the last text event among want.
func lastText(want []string) string {
	text := ""
	for _, w := range want {
		if t, ok := strings.CutPrefix(w, "text "); ok {
			text = t
		}
	}
	return text
}

func TestParseOpencodeOddLines(t *testing.T) {
	tests := []struct {
		line    string
		want    string
		wantErr bool
	}{
		{line: `not json`, wantErr: true},
		{line: ``, wantErr: true},
		{line: `{"type":"text","part":`, wantErr: true},
		{line: `{"type":"snapshot","sessionID":"ses_1"}`, want: "unknown"},
		{line: `{"type":5}`, want: "unknown"},
		{line: `{"type":"text","part":{"text":7}}`, want: "unknown"},
		{line: `{"type":"text","part":"hello"}`, want: "unknown"},
		{line: `{"type":"tool_use","part":{"tool":"bash","callID":"c1","state":{"status":"running","input":{"command":"ls"}}}}`, want: `tool_use bash true {"command":"ls"}`},
		{line: `{"type":"step_finish","part":{"reason":"length"}}`, want: "system/step_finish | result/length (error)"},
		{line: `{"type":"error","error":{"name":"ProviderAuthError","data":7}}`, want: "result/error ProviderAuthError (error)"},
		{line: `{"type":"reasoning","part":{"text":"hmm"}}`, want: "thinking"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			evs, err := parseOpencodeLine([]byte(tt.line))
			if tt.wantErr {
				if !errors.Is(err, transcript.ErrNotJSON) {
					t.Fatalf("err = %v, want ErrNotJSON", err)
				}
				return
			}
			if err != nil || len(evs) == 0 {
				t.Fatalf("got %v, %v", evs, err)
			}
			var got []string
			for _, ev := range evs {
				got = append(got, ocBrief(ev))
			}
			if strings.Join(got, " | ") != tt.want {
				t.Errorf("got %q, want %q", strings.Join(got, " | "), tt.want)
			}
		})
	}
}

// runOpencodeScript runs opencode's command on this host's /bin/sh with a
// stub opencode (stubClaude's script) alone on PATH.
func runOpencodeScript(t *testing.T, o Options, exitCode string) scriptRun {
	t.Helper()
	bin := t.TempDir()
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cat, filepath.Join(bin, "cat")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "opencode"), []byte(stubClaude), 0o755); err != nil {
		t.Fatal(err)
	}
	argsFile := filepath.Join(t.TempDir(), "args")
	argv := Opencode{}.Command(o)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + bin, "STUB_ARGS=" + argsFile, "STUB_EXIT=" + exitCode}
	out, err := cmd.CombinedOutput()
	var run scriptRun
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		run.exitCode = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run %q: %v", argv, err)
	}
	if len(out) != 0 {
		t.Errorf("script wrote to its own output instead of the files: %q", out)
	}
	data, _ := os.ReadFile(argsFile)
	run.args = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	data, _ = os.ReadFile(o.LogPath)
	run.stdout = string(data)
	data, _ = os.ReadFile(o.StderrPath)
	run.stderr = string(data)
	return run
}

func TestOpencodeCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `run's "dir" $HOME`)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	prompt := "Fix it; don't `rm -rf /` or $(touch pwned)\n"
	base := Options{
		SessionID:  "0f8fad5b-d9cb-469f-a165-70867728950e",
		PromptPath: filepath.Join(dir, "prompt.md"),
		LogPath:    filepath.Join(dir, "agent.jsonl"),
		StderrPath: filepath.Join(dir, "agent stderr"),
	}
	if err := os.WriteFile(base.PromptPath, []byte(prompt), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		model  string
		resume bool
		exit   string
		want   []string
	}{
		{name: "defaults", exit: "0", want: []string{"run", "--format=json", "--auto", "--model=airlock/" + OpencodeModel}},
		{name: "a model", model: "gpt-4.1-mini", exit: "0", want: []string{"run", "--format=json", "--auto", "--model=airlock/gpt-4.1-mini"}},
		{name: "hostile model stays one argument", model: "x --dir=/ $(touch pwned)", exit: "0", want: []string{"run", "--format=json", "--auto", "--model=airlock/x --dir=/ $(touch pwned)"}},
		{name: "resume continues the home's session", resume: true, exit: "0", want: []string{"run", "--format=json", "--auto", "--model=airlock/" + OpencodeModel, "--continue"}},
		{name: "exit status is opencode's", exit: "1", want: []string{"run", "--format=json", "--auto", "--model=airlock/" + OpencodeModel}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.Model, o.Resume = tt.model, tt.resume
			run := runOpencodeScript(t, o, tt.exit)
			if want := map[string]int{"0": 0, "1": 1}[tt.exit]; run.exitCode != want {
				t.Errorf("exit code = %d, want %d", run.exitCode, want)
			}
			if !slices.Equal(run.args, tt.want) {
				t.Errorf("opencode got args\n%q\nwant\n%q", run.args, tt.want)
			}
			if run.stdout != prompt {
				t.Errorf("opencode's stdin (echoed to the log) = %q, want the prompt", run.stdout)
			}
			if run.stderr != "stub stderr\n" {
				t.Errorf("stderr file = %q", run.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
				t.Fatal("a value was executed by the shell")
			}
		})
	}
	argv := Opencode{}.Command(base)
	for _, a := range argv {
		if strings.Contains(a, "Fix it") {
			t.Errorf("argv carries the prompt: %q", argv)
		}
	}
}

func TestOpencodeEnvConfig(t *testing.T) {
	env := Opencode{}.Env(Options{Model: "gpt-4.1"})
	var content string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "OPENCODE_CONFIG_CONTENT="); ok {
			content = v
		}
		if strings.Contains(strings.ToLower(kv), "sk-") {
			t.Errorf("env carries something like a key: %s", kv)
		}
	}
	for _, want := range []string{"HOME=/home/agent", "OPENCODE_DISABLE_MODELS_FETCH=1", "OPENCODE_DISABLE_AUTOUPDATE=1", "XDG_CONFIG_HOME=" + opencodeConfigHome} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s", want)
		}
	}
	var cfg struct {
		Model    string `json:"model"`
		Provider map[string]struct {
			NPM     string `json:"npm"`
			Options struct {
				BaseURL string `json:"baseURL"`
				APIKey  string `json:"apiKey"`
			} `json:"options"`
			Models map[string]any `json:"models"`
		} `json:"provider"`
	}
	if err := json.Unmarshal([]byte(content), &cfg); err != nil {
		t.Fatalf("OPENCODE_CONFIG_CONTENT %q: %v", content, err)
	}
	p := cfg.Provider["airlock"]
	if cfg.Model != "airlock/gpt-4.1" || p.NPM != "@ai-sdk/openai-compatible" || p.Options.BaseURL != APIBaseURL ||
		p.Options.APIKey != "{env:OPENAI_API_KEY}" || p.Models["gpt-4.1"] == nil {
		t.Errorf("config = %s", content)
	}
}

func TestOpencodeAPI(t *testing.T) {
	lookup := func(env map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	}
	a := Opencode{}
	if a.HasCredentials(lookup(map[string]string{"OPENAI_API_KEY": " "})) {
		t.Error("a blank key counts as credentials")
	}
	if _, err := a.API(lookup(nil)); err == nil {
		t.Error("API without a key did not fail")
	}
	auth, err := a.API(lookup(map[string]string{"OPENAI_API_KEY": "sk-real"}))
	if err != nil {
		t.Fatal(err)
	}
	if auth.Headers["Authorization"] != "Bearer sk-real" || auth.Secret != "sk-real" || !slices.Contains(auth.Strip, "Authorization") {
		t.Errorf("auth = %+v", auth)
	}
	for _, kv := range auth.Env {
		if strings.Contains(kv, "sk-real") {
			t.Errorf("the sandbox gets the key: %s", kv)
		}
	}
	if len(auth.Routes) != 1 || auth.Routes[0] != (Route{Method: "POST", Path: "/chat/completions", Metered: true}) ||
		auth.Upstream != "https://api.openai.com/v1" || auth.Usage != "openai-chat" {
		t.Errorf("routes %+v upstream %q usage %q", auth.Routes, auth.Upstream, auth.Usage)
	}
	if !a.IsSecret("OPENAI_API_KEY") || a.IsSecret("HOME") {
		t.Error("IsSecret")
	}
	if got, err := Lookup("opencode"); err != nil || got.Name() != "opencode" {
		t.Errorf("Lookup(opencode) = %v, %v", got, err)
	}
}
