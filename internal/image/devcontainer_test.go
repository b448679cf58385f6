package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/devcontainer"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func loadDev(t *testing.T, dir string) *devcontainer.Config {
	t.Helper()
	dc, err := devcontainer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dc
}

// The agent image's Dockerfile on a dev container: the engine's own parser
// reads the environment exactly as the devcontainer.json gave it, the
// features run as root in order, and airlock's user and agent CLI end it.
func TestDevDockerfile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		".devcontainer/devcontainer.json": `{"image": "debian:bookworm",
			"features": {"./b": {}, "./a": {"level": 3}},
			"containerEnv": {"FOO": "bar", "Q": "a \"quoted\" $HOME \\ back", "P": "${containerEnv:PATH}:/opt/x"}}`,
		".devcontainer/a/devcontainer-feature.json": `{"containerEnv": {"A_HOME": "/opt/a"}}`,
		".devcontainer/a/install.sh":                "echo a",
		".devcontainer/b/devcontainer-feature.json": `{}`,
		".devcontainer/b/install.sh":                "echo b",
	})
	dc := loadDev(t, dir)
	spec, err := devSpec(Spec{Agent: agent.Claude{}}, dir, dc)
	if err != nil {
		t.Fatal(err)
	}
	text := dockerfile(spec)
	res, err := parser.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	// Values as the engine expands them, the base image's PATH being /bin.
	env := map[string]string{"PATH": "/bin"}
	var copies []string
	from := ""
	lex := shell.NewLex('\\')
	for _, n := range res.AST.Children {
		switch strings.ToLower(n.Value) {
		case "from":
			from = n.Next.Value
		case "copy":
			copies = append(copies, n.Next.Value)
		case "env":
			for kv := n.Next; kv != nil && kv.Next != nil; kv = kv.Next.Next.Next {
				v, _, err := lex.ProcessWord(kv.Next.Value, mapEnv(env))
				if err != nil {
					t.Fatalf("ENV %s: %v", kv.Value, err)
				}
				env[kv.Value] = v
			}
		}
	}
	// An image without a PATH (an imported root filesystem) gets the usual one.
	delete(env, "PATH")
	path := res.AST.Children[2] // FROM, USER root, ENV PATH=...
	if v, _, err := lex.ProcessWord(path.Next.Next.Value, mapEnv{}); err != nil || v != "/opt/agent/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Errorf("ENV %s on a base without PATH: %q (%v)", path.Next.Value, v, err)
	}
	if from != "debian:bookworm" {
		t.Errorf("FROM %s", from)
	}
	for k, want := range map[string]string{"FOO": "bar", "Q": `a "quoted" $HOME \ back`, "P": "/opt/agent/bin:/bin:/opt/x", "A_HOME": "/opt/a", "HOME": "/home/agent"} {
		if env[k] != want {
			t.Errorf("ENV %s = %q, want %q", k, env[k], want)
		}
	}
	if strings.Join(copies, " ") != "features/00/ features/01/" {
		t.Errorf("COPY sources %q, want the features in file order", copies)
	}
	user := strings.Index(text, "useradd --non-unique --uid 1000")
	feat := strings.Index(text, `# feature "./b"`)
	install := strings.Index(text, "npm install -g")
	last := strings.Index(text, "USER agent")
	if user < 0 || feat < user || install < feat || last < install || !strings.Contains(text, "\nUSER root\n") || !strings.Contains(text, "has no apt-get") {
		t.Errorf("layers out of order (user %d, features %d, agent %d, USER agent %d):\n%s", user, feat, install, last, text)
	}
	files := devContextFiles(spec)
	if env := string(files["features/01/devcontainer-features.env"]); !strings.Contains(env, "LEVEL='3'\n") || !strings.Contains(env, "_REMOTE_USER='agent'\n") {
		t.Errorf("feature a's environment file:\n%s", env)
	}
	if string(files["features/00/install.sh"]) != "echo b" {
		t.Errorf("feature b's install.sh = %q", files["features/00/install.sh"])
	}
}

// The tags: the base's covers the Dockerfile's context (less what
// .dockerignore, .git and airlock's private files leave out); the agent
// image's covers the base, the features' files and the environment, not
// the setup commands, which run in the sandbox.
func TestDevRefs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		".devcontainer/devcontainer.json": `{"build": {"dockerfile": "Dockerfile", "context": ".."},
			"features": {"./f": {}}, "containerEnv": {"FOO": "bar"}, "postCreateCommand": "make"}`,
		".devcontainer/Dockerfile":                  "FROM debian\n",
		".devcontainer/f/devcontainer-feature.json": `{}`,
		".devcontainer/f/install.sh":                "echo 1",
		".dockerignore":                             "build\n.devcontainer\n",
		"src/main.c":                                "int main;",
		"build/out":                                 "x",
		".git/HEAD":                                 "ref",
		".airlock/env":                              "TOKEN=secret",
	})
	spec := Spec{Agent: agent.Claude{}}
	refs := func() (string, string) {
		t.Helper()
		dc := loadDev(t, dir)
		base, err := DevBaseRef(dir, dc)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := DevRef(spec, dir, dc)
		if err != nil {
			t.Fatal(err)
		}
		return base, ref
	}
	base0, ref0 := refs()
	name := sanitizeName(filepath.Base(dir))
	if !strings.HasPrefix(base0, "airlock-project-"+name+":devcontainer-") || !strings.HasPrefix(ref0, "airlock-project-"+name+":claude-") {
		t.Errorf("refs %s, %s", base0, ref0)
	}
	steps := []struct {
		what       string
		files      map[string]string
		base, aref bool // whether each must change
	}{
		{"a setup command", map[string]string{".devcontainer/devcontainer.json": `{"build": {"dockerfile": "Dockerfile", "context": ".."},
			"features": {"./f": {}}, "containerEnv": {"FOO": "bar"}, "postCreateCommand": "make all"}`}, false, false},
		{"an ignored file", map[string]string{"build/out": "y"}, false, false},
		{".git", map[string]string{".git/HEAD": "other"}, false, false},
		{".airlock/env", map[string]string{".airlock/env": "TOKEN=other"}, false, false},
		{"a context file", map[string]string{"src/main.c": "int main2;"}, true, true},
		{"a feature's script", map[string]string{".devcontainer/f/install.sh": "echo 2"}, false, true},
		{"containerEnv", map[string]string{".devcontainer/devcontainer.json": `{"build": {"dockerfile": "Dockerfile", "context": ".."},
			"features": {"./f": {}}, "containerEnv": {"FOO": "baz"}, "postCreateCommand": "make all"}`}, false, true},
	}
	for _, s := range steps {
		writeFiles(t, dir, s.files)
		base, ref := refs()
		if (base != base0) != s.base || (ref != ref0) != s.aref {
			t.Errorf("after changing %s: base changed %v (want %v), agent image changed %v (want %v)", s.what, base != base0, s.base, ref != ref0, s.aref)
		}
		base0, ref0 = base, ref
	}

	dc := loadDev(t, dir)
	skip, err := devContextSkip(dir, dc.Build)
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{".git": true, ".airlock/env": true, ".airlock/x.local.toml": true, "build": true, "src/main.c": false, ".devcontainer/Dockerfile": false, ".devcontainer/devcontainer.json": true, ".dockerignore": false} {
		if skip(rel) != want {
			t.Errorf("skip(%s) = %v, want %v", rel, !want, want)
		}
	}
	// Each agent gets its own image on the same base.
	for _, a := range agent.All() {
		if ref, _ := DevRef(Spec{Agent: a}, dir, dc); !strings.Contains(ref, ":"+a.Name()+"-") {
			t.Errorf("%s's ref %s", a.Name(), ref)
		}
	}
}

type mapEnv map[string]string

func (m mapEnv) Get(k string) (string, bool) { v, ok := m[k]; return v, ok }

func (m mapEnv) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
