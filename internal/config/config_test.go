package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/prompt"
)

// write creates dir/name with content and returns its path.
func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func sourcesMap(r *Resolved) map[string]Source {
	m := map[string]Source{}
	for _, s := range r.Sources() {
		if s.Key == "sandbox.env" {
			m[s.Key+" "+s.Value] = s
			continue
		}
		m[s.Key] = s
	}
	return m
}

func TestLayering(t *testing.T) {
	dir := t.TempDir()
	sys := write(t, dir, "etc/config.toml", `
[agent]
model = "sys-model"
max_turns = 5
[sandbox]
memory = "1g"
env = ["A=sys", "B=sys"]
`)
	user := write(t, dir, "user/config.toml", `
[agent]
model = "user-model"
[sandbox]
cpus = 1
env_file = "../secrets.env"
`)
	project := write(t, dir, "repo/.airlock/config.toml", `
agent.claude.version = "2.0.1"
[sandbox]
env = ["B=project", "C=project"]
[image]
ca_certificates = ["host", "certs/corp.pem"]
`)
	r, err := Loader{SystemPath: sys, UserPath: user, ProjectPath: project}.Load()
	if err != nil {
		t.Fatal(err)
	}
	p, err := prompt.Parse("fix-auth.md", []byte("---\nmax_turns: 9\nenv: [C=prompt]\n---\ndo it"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ApplyPrompt(p); err != nil {
		t.Fatal(err)
	}
	if err := r.Set("sandbox.memory", "2g", "flag --memory"); err != nil {
		t.Fatal(err)
	}

	c := r.Config
	if c.Agent.Model != "user-model" || c.Agent.MaxTurns != 9 || c.Agent.CLI["claude"].Version != "2.0.1" {
		t.Errorf("agent = %+v", c.Agent)
	}
	if c.Sandbox.MemoryBytes != 2<<30 || c.Sandbox.CPUs != 1 || c.Sandbox.Pids != DefaultPids {
		t.Errorf("sandbox limits = %+v", c.Sandbox)
	}
	if want := []string{"A=sys", "B=project", "C=prompt"}; !reflect.DeepEqual(c.Sandbox.Env, want) {
		t.Errorf("env = %q, want %q", c.Sandbox.Env, want)
	}
	if want := filepath.Join(dir, "secrets.env"); c.Sandbox.EnvFile != want {
		t.Errorf("env_file = %q, want %q (relative to the file that set it)", c.Sandbox.EnvFile, want)
	}
	wantCA := []string{HostCABundle, filepath.Join(dir, "repo", ".airlock", "certs", "corp.pem")}
	if !reflect.DeepEqual(c.Image.CACertificates, wantCA) {
		t.Errorf("ca_certificates = %q, want %q", c.Image.CACertificates, wantCA)
	}

	want := map[string]Source{
		"agent.model":             {"agent.model", `"user-model"`, user + ":3"},
		"agent.max_turns":         {"agent.max_turns", "9", "prompt fix-auth.md:2"},
		"agent.name":              {"agent.name", `"claude"`, "default"},
		"agent.claude.version":    {"agent.claude.version", `"2.0.1"`, project + ":2"},
		"sandbox.memory":          {"sandbox.memory", `"2g"`, "flag --memory"},
		"sandbox.cpus":            {"sandbox.cpus", "1", user + ":5"},
		"sandbox.pids":            {"sandbox.pids", "4096", "default"},
		`sandbox.env "A=sys"`:     {"sandbox.env", `"A=sys"`, sys + ":7"},
		`sandbox.env "B=project"`: {"sandbox.env", `"B=project"`, project + ":4"},
		`sandbox.env "C=prompt"`:  {"sandbox.env", `"C=prompt"`, "prompt fix-auth.md:3"},
		"sandbox.env_file":        {"sandbox.env_file", quote(c.Sandbox.EnvFile), user + ":6"},
		"image.ca_certificates":   {"image.ca_certificates", quoteList(wantCA), project + ":6"},
	}
	got := sourcesMap(r)
	for k, w := range want {
		if got[k] != w {
			t.Errorf("source %s = %+v, want %+v", k, got[k], w)
		}
	}
	if len(got) != len(settings)+2 { // three env rows instead of one
		t.Errorf("Sources has %d rows, want %d: %+v", len(got), len(settings)+2, r.Sources())
	}
	srcs := r.Sources()
	for i := 1; i < len(srcs); i++ {
		if srcs[i-1].Key > srcs[i].Key {
			t.Errorf("Sources not sorted: %q before %q", srcs[i-1].Key, srcs[i].Key)
		}
	}
}

func TestLoadMissingAndEmpty(t *testing.T) {
	dir := t.TempDir()
	r, err := Loader{SystemPath: filepath.Join(dir, "nope.toml"), UserPath: ""}.Load()
	if err != nil {
		t.Fatalf("missing files must be skipped: %v", err)
	}
	if !reflect.DeepEqual(r.Config, Defaults()) {
		t.Errorf("Config = %+v, want defaults", r.Config)
	}
	for _, s := range r.Sources() {
		if s.From != FromDefault {
			t.Errorf("%s from %q, want default", s.Key, s.From)
		}
	}
	if _, err := (Loader{UserPath: dir}).Load(); err == nil {
		t.Error("a directory in place of the config file must be an error")
	}
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	if d.Agent.Name != "claude" || d.Agent.CLI["claude"].Version != "2.1.330" || d.Image.Base != "debian:bookworm-slim" ||
		d.Sandbox.MemoryBytes != 4<<30 || d.Sandbox.CPUs != 2 || d.Sandbox.Pids != 4096 || d.Run.Detach {
		t.Errorf("Defaults = %+v", d)
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unknown key", "[agent]\nmodel = \"x\"\nnmae = \"y\"\n", `:3: unknown key "agent.nmae"; [agent] has: ` + strings.Join(slices.Sorted(slices.Values(append(agent.Names(), "max_turns", "model", "name"))), ", ")},
		{"unknown table", "\n[agnet]\nname = \"claude\"\n", `:2: unknown table or key "agnet"; the tables are [agent], [egress], [engine], [github], [image], [notify], [profiles], [run], [sandbox]`},
		{"unknown top key", "model = \"x\"\n", `:1: unknown table or key "model"`},
		{"setting as table", "[sandbox.env]\nA = 1\n", ":1: sandbox.env: must be a list of strings, got a table"},
		{"table as value", "image = \"x\"\n", ":1: image must be a table ([image]), got the string \"x\""},
		{"syntax", "[agent]\nmodel = \n", ":2: invalid TOML: "},
		{"duplicate", "[agent]\nmodel = \"a\"\nmodel = \"b\"\n", ":3: invalid TOML: "},
		{"bad agent", "[agent]\nname = \"cursor\"\n", `:2: agent.name: unknown agent "cursor"; the agents are ` + strings.Join(agent.Names(), ", ")},
		{"max_turns type", "[agent]\nmax_turns = \"ten\"\n", `:2: agent.max_turns: must be a whole number, got the string "ten"`},
		{"max_turns negative", "[agent]\nmax_turns = -1\n", ":2: agent.max_turns: must be 0 (no limit) or a positive number of turns, got -1"},
		{"version injection", "[agent.claude]\nversion = \"1.0.0 && curl x\"\n", `:2: agent.claude.version: "1.0.0 && curl x" is not a Claude Code version`},
		{"base_url", "[agent.claude]\nbase_url = \"gateway:8080\"\n", `:2: agent.claude.base_url: "gateway:8080" is not an http(s) URL`},
		{"incus pool", "[engine.incus]\npool = \"my pool; rm\"\n", `:2: engine.incus.pool: "my pool; rm" is not an Incus storage pool name`},
		{"incus network", "[engine.incus]\nnetwork = \"-br\"\n", `:2: engine.incus.network: "-br" is not an Incus network name`},
		{"incus nesting", "[engine.incus]\nnesting = \"yes\"\n", `:2: engine.incus.nesting: must be true or false`},
		{"incus unknown", "[engine.incus]\nprofile = \"x\"\n", `:2: unknown key "engine.incus.profile"; [engine.incus] has: nesting, network, pool`},
		{"memory", "[sandbox]\nmemory = \"lots\"\n", `:2: sandbox.memory: invalid size "lots"; write a number with an optional unit`},
		{"memory number", "[sandbox]\nmemory = 4\n", `:2: sandbox.memory: must be text, got the integer 4`},
		{"memory tiny", "[sandbox]\nmemory = \"1m\"\n", `:2: sandbox.memory: "1m" is too small; Docker needs at least 6m`},
		{"cpus zero", "[sandbox]\ncpus = 0\n", ":2: sandbox.cpus: must be a number of CPUs greater than 0"},
		{"cpus nan", "[sandbox]\ncpus = nan\n", ":2: sandbox.cpus: must be a number of CPUs greater than 0"},
		{"pids", "[sandbox]\npids = 0\n", ":2: sandbox.pids: must be a number of processes greater than 0, got 0"},
		{"env entry", "[sandbox]\nenv = [\"OK\", \"NOT-OK=1\"]\n", `:2: sandbox.env: invalid environment entry "NOT-OK=1"`},
		{"env type", "[sandbox]\nenv = [1]\n", ":2: sandbox.env: must be a list of strings, but an entry is the integer 1"},
		{"detach", "[run]\ndetach = \"yes\"\n", `:2: run.detach: must be true or false, got the string "yes"`},
		{"tilde", "[sandbox]\nenv_file = \"~/x.env\"\n", `:2: sandbox.env_file: "~/x.env": ~ is not expanded`},
		{"image spaces", "[image]\nname = \"a b\"\n", `:2: image.name: "a b" must not contain spaces`},
		{"base empty", "[image]\nbase = \"\"\n", `:2: image.base: is empty`},
		{"inline table line", "agent = { model = \"x\", bad = 1 }\n", `:1: unknown key "agent.bad"`},
		{"date", "[agent]\nmodel = 2024-01-01\n", ":2: agent.model: must be text, got a date or time"},
		{"scan mode", "[egress]\n\nscan = \"warn\"\n", `:3: egress.scan: unknown scan mode "warn": use block, log or off`},
		{"scan host port", "[egress]\nscan_log = [\"ok.test\", \"internal.test:8080\"]\n", `:2: egress.scan_log: "internal.test:8080": a scan host pattern takes no port`},
		{"scan host pattern", "[egress]\nscan_off = [\"a b\"]\n", `:2: egress.scan_off: `},
		{"scan body size", "[egress]\nscan_body_kib = -1\n", `:2: egress.scan_body_kib: must be a number of KiB from 0 (no body scanning) to 65536, got -1`},
		{"scan body type", "[egress]\nscan_body_kib = \"256k\"\n", `:2: egress.scan_body_kib: must be a whole number, got the string "256k"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, t.TempDir(), "config.toml", tt.in)
			_, err := Loader{UserPath: path}.Load()
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), path+tt.want) {
				t.Errorf("error = %q\nwant prefix %q", err, path+tt.want)
			}
		})
	}
}

func TestScanSettings(t *testing.T) {
	dir := t.TempDir()
	user := write(t, dir, "user.toml", "[egress]\nscan = \"log\"\nscan_off = [\"*.corp.test\"]\n")
	proj := write(t, dir, "proj.toml", "[egress]\nscan_block = [\"secure.corp.test\"]\nscan_off = [\"dev.test\"]\nscan_body_kib = 0\n")
	r, err := Loader{SystemPath: user, UserPath: proj}.Load()
	if err != nil {
		t.Fatal(err)
	}
	e := r.Config.Egress
	if e.Scan != "log" || e.ScanBodyKiB != 0 || !reflect.DeepEqual(e.ScanOff, []string{"*.corp.test", "dev.test"}) ||
		!reflect.DeepEqual(e.ScanBlock, []string{"secure.corp.test"}) || len(e.ScanLog) != 0 {
		t.Errorf("egress = %+v", e)
	}
	if d := Defaults().Egress; d.Scan != "block" || d.ScanBodyKiB != egress.DefaultScanBodyKiB {
		t.Errorf("defaults: scan %q, scan_body_kib %d", d.Scan, d.ScanBodyKiB)
	}
	if from := r.EntryFrom("egress.scan_off", "dev.test"); from != proj+":3" {
		t.Errorf("scan_off entry from %q", from)
	}
}

func TestFileErrorsAllReported(t *testing.T) {
	path := write(t, t.TempDir(), "config.toml", "[sandbox]\npids = 0\ncpus = -1\n[agent]\nnope = 1\n")
	_, err := Loader{ProjectPath: path}.Load()
	if err == nil {
		t.Fatal("want errors")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{path + ":2: sandbox.pids", path + ":3: sandbox.cpus", path + ":5: unknown key"}
	if len(lines) != len(want) {
		t.Fatalf("got %d error lines, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		key, value string
		check      func(Config) bool
		wantErr    string
	}{
		{key: "agent.max_turns", value: "12", check: func(c Config) bool { return c.Agent.MaxTurns == 12 }},
		{key: "sandbox.cpus", value: "0.5", check: func(c Config) bool { return c.Sandbox.CPUs == 0.5 }},
		{key: "run.detach", value: "true", check: func(c Config) bool { return c.Run.Detach }},
		{key: "sandbox.memory", value: "1536m", check: func(c Config) bool { return c.Sandbox.MemoryBytes == 1536<<20 }},
		{key: "sandbox.pids", value: "x", wantErr: `flag --x: sandbox.pids must be a whole number, got "x"`},
		{key: "run.detach", value: "maybe", wantErr: `flag --x: run.detach must be true or false, got "maybe"`},
		{key: "sandbox.cpus", value: "-2", wantErr: "flag --x: sandbox.cpus: must be a number of CPUs greater than 0"},
		{key: "agent.nope", value: "1", wantErr: `flag --x: unknown setting "agent.nope"; known settings: agent.claude.base_url,`},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			r, _ := Loader{}.Load()
			err := r.Set(tt.key, tt.value, "flag --x")
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want prefix %q", err, tt.wantErr)
				}
				if !reflect.DeepEqual(r.Config, Defaults()) || r.From(tt.key) != FromDefault {
					t.Error("a rejected Set changed the configuration")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(r.Config) || r.From(tt.key) != "flag --x" {
				t.Errorf("Set did not take effect: %+v from %q", r.Config, r.From(tt.key))
			}
		})
	}
}

func TestSetListsFromRepeatedFlags(t *testing.T) {
	dir := t.TempDir()
	path := write(t, dir, "c.toml", "[image]\nca_certificates = [\"a.pem\"]\n[sandbox]\nenv = [\"FILE=1\"]\n")
	r, err := Loader{ProjectPath: path}.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"/x.pem", "host"} {
		if err := r.Set("image.ca_certificates", v, "flag --ca-cert"); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range []string{"A=1", "FILE=2"} {
		if err := r.Set("sandbox.env", v, "flag --env"); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"/x.pem", HostCABundle}; !reflect.DeepEqual(r.Config.Image.CACertificates, want) {
		t.Errorf("ca_certificates = %q, want the flags' list %q", r.Config.Image.CACertificates, want)
	}
	if want := []string{"FILE=2", "A=1"}; !reflect.DeepEqual(r.Config.Sandbox.Env, want) {
		t.Errorf("env = %q, want %q", r.Config.Sandbox.Env, want)
	}
}

func TestDefaultPaths(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name string
		repo string
		env  map[string]string
		want Loader
	}{
		{"xdg", "/repo", map[string]string{"XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"},
			Loader{SystemPath, "/xdg/airlock/config.toml", "/repo/.airlock/config.toml"}},
		{"home fallback", "", map[string]string{"HOME": "/home/u"},
			Loader{SystemPath, "/home/u/.config/airlock/config.toml", ""}},
		{"relative xdg ignored", "/r", map[string]string{"XDG_CONFIG_HOME": "rel", "HOME": "/h"},
			Loader{SystemPath, "/h/.config/airlock/config.toml", "/r/.airlock/config.toml"}},
		{"nothing", "", nil, Loader{SystemPath: SystemPath}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DefaultPaths(tt.repo, env(tt.env)); got != tt.want {
				t.Errorf("DefaultPaths = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestProjectTemplate(t *testing.T) {
	dir := t.TempDir()
	r, err := Loader{ProjectPath: write(t, dir, "commented.toml", ProjectTemplate())}.Load()
	if err != nil {
		t.Fatalf("template as written: %v", err)
	}
	if !reflect.DeepEqual(r.Config, Defaults()) {
		t.Errorf("template as written changes the config: %+v", r.Config)
	}

	// Uncommenting every setting must parse and give the defaults: the
	// template documents the real defaults and every key.
	setting := regexp.MustCompile(`(?m)^# ([a-z_]+ = .*)$`)
	uncommented := setting.ReplaceAllString(ProjectTemplate(), "$1")
	r, err = Loader{ProjectPath: write(t, dir, "uncommented.toml", uncommented)}.Load()
	if err != nil {
		t.Fatalf("template uncommented: %v", err)
	}
	if !reflect.DeepEqual(r.Config, Defaults()) {
		t.Errorf("template uncommented = %+v, want defaults %+v", r.Config, Defaults())
	}
	for _, s := range r.Sources() {
		if s.From == FromDefault {
			t.Errorf("template does not show %s", s.Key)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"512m", 512 << 20}, {"4g", 4 << 30}, {"4G", 4 << 30}, {"1.5g", 3 << 29}, {"2GiB", 2 << 30},
		{"100", 100}, {"100b", 100}, {"64k", 64 << 10}, {"1t", 1 << 40}, {" 8 m ", 8 << 20}, {"7mb", 7 << 20},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "g", "-1g", "4x", "1.g", "4 gb extra", "99999999999t", "1e3m"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded, want an error", bad)
		}
	}
	for _, n := range []int64{4 << 30, 1536 << 20, 100, 6 << 20} {
		if back, _ := ParseSize(FormatSize(n)); back != n {
			t.Errorf("FormatSize(%d) = %q does not round-trip", n, FormatSize(n))
		}
	}
}

func FuzzApplyFile(f *testing.F) {
	f.Add([]byte(ProjectTemplate()))
	f.Add([]byte("[agent]\nmax_turns = 3\n[sandbox]\nmemory = \"1g\"\ncpus = 0.5\nenv = [\"A\", \"B=1\"]\n"))
	f.Add([]byte("agent = { claude = { version = \"1.2.3\" } }\n"))
	f.Add([]byte("[[agent]]\nname = 1\n"))
	f.Add([]byte("a.b.c = 1\n[x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newResolved()
		if err := r.applyFile("/fuzz/config.toml", data); err != nil {
			if !strings.HasPrefix(err.Error(), "/fuzz/config.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		c := r.Config
		if c.Agent.Name != "claude" || c.Agent.MaxTurns < 0 || !(c.Sandbox.CPUs > 0) ||
			c.Sandbox.Pids <= 0 || c.Sandbox.MemoryBytes < minMemory || c.Image.Base == "" {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
		for _, e := range c.Sandbox.Env {
			if err := prompt.ValidateEnvEntry(e); err != nil {
				t.Fatalf("accepted env entry: %v", err)
			}
		}
		for _, s := range r.Sources() {
			if s.From != FromDefault && !strings.HasPrefix(s.From, "/fuzz/config.toml:") {
				t.Fatalf("%s has provenance %q", s.Key, s.From)
			}
		}
	})
}

// A repository's own config is anyone's: it may not decide where the
// user's credentials go, nor copy anything of the user's machine into the
// sandbox. The same lines in the user's config are fine.
func TestProjectMayNotReachYourSecrets(t *testing.T) {
	tests := []struct {
		name, toml, errHas string
	}{
		{"model gateway", "[agent.claude]\nbase_url = \"https://evil.example\"\n", "agent.claude.base_url: a repository's own config may not set this"},
		{"git token's host", "[egress]\ngit_auth = \"evil.example\"\n", "egress.git_auth: a repository's own config may not set this"},
		{"GitHub API", "[github]\napi_url = \"https://evil.example/api/v3\"\n", "github.api_url: a repository's own config may not set this (airlock pr would send your GitHub token to the URL it names)"},
		{"proxy's trust", "[egress]\nca_certificates = [\"evil.pem\"]\n", "egress.ca_certificates: a repository's own config may not set this"},
		{"env file", "[sandbox]\nenv_file = \"/home/u/.aws/credentials\"\n", "sandbox.env_file: a repository's own config may not set this"},
		{"ssh keys", "[egress.ssh]\nkeys = [\"evil.pem\"]\n", "egress.ssh.keys: a repository's own config may not set this"},
		{"ssh key file", "[egress.ssh]\nkey_file = \"evil.pem\"\n", "egress.ssh.key_file: a repository's own config may not set this"},
		{"ssh hosts", "[egress.ssh]\nhosts = [\"evil.example\"]\n", "egress.ssh.hosts: a repository's own config may not set this"},
		{"host mounts", "[sandbox]\nmounts = [\"/etc:/x\"]\n", "sandbox.mounts: a repository's own config may not set this (it gives the sandbox directories of your machine)"},
		{"environment copied", "[sandbox]\nenv = [\"A=1\", \"AWS_SECRET_ACCESS_KEY\"]\n", `sandbox.env: "AWS_SECRET_ACCESS_KEY" would copy your environment's AWS_SECRET_ACCESS_KEY into the sandbox`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "evil.pem"), nil, 0o644)
			path := write(t, dir, "repo/.airlock/config.toml", tt.toml)
			_, err := Loader{ProjectPath: path}.Load()
			if err == nil || !strings.Contains(err.Error(), path+":2: "+tt.errHas) {
				t.Fatalf("project config: %v; want %s:2: %s", err, path, tt.errHas)
			}
			user := write(t, dir, "user/config.toml", strings.ReplaceAll(tt.toml, "evil.pem", "../evil.pem"))
			if _, err := (Loader{UserPath: user}).Load(); err != nil && !strings.Contains(err.Error(), "evil.pem") {
				t.Errorf("the same in the user's config: %v", err)
			}
		})
	}
}

// Every agent's gateway is the user's to choose, whatever agents there are.
func TestEveryAgentsBaseURLIsUserOnly(t *testing.T) {
	for _, name := range append(agent.Names(), "some-future-agent") {
		if _, ok := userOnlyWhy("agent." + name + ".base_url"); !ok {
			t.Errorf("agent.%s.base_url may be set by a repository's own config", name)
		}
	}
	if _, ok := userOnlyWhy("agent.model"); ok {
		t.Error("agent.model is user-only")
	}
}
