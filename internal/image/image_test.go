package image

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/agent"
)

func TestDefaultRef(t *testing.T) {
	base := Spec{Base: BootstrapBase, Mirror: "http://deb.debian.org/debian", CACerts: [][]byte{[]byte("CA one")}}
	ref := DefaultRef(base)
	if !regexp.MustCompile(`^airlock-claude:[0-9a-f]{12}$`).MatchString(ref) {
		t.Fatalf("DefaultRef = %q, want airlock-claude:<12 hex>", ref)
	}
	if again := DefaultRef(base); again != ref {
		t.Errorf("same spec gave %s then %s", ref, again)
	}
	explicit := base
	explicit.Agent, explicit.Version = agent.Claude{}, agent.ClaudeVersion
	if got := DefaultRef(explicit); got != ref {
		t.Errorf("spelling out the default Claude version changed the tag: %s vs %s", got, ref)
	}

	changes := map[string]func(s *Spec){
		"claude version": func(s *Spec) { s.Version = "2.1.331" },
		"mirror":         func(s *Spec) { s.Mirror = "http://mirror.example/debian" },
		"base":           func(s *Spec) { s.Base = "debian:bookworm" },
		"CA content":     func(s *Spec) { s.CACerts = [][]byte{[]byte("CA two")} },
		"extra CA":       func(s *Spec) { s.CACerts = append(s.CACerts, []byte("CA two")) },
		"no CA":          func(s *Spec) { s.CACerts = nil },
		// Length-prefixing keeps a boundary shift from colliding.
		"CA split": func(s *Spec) { s.CACerts = [][]byte{[]byte("CA"), []byte(" one")} },
	}
	seen := map[string]string{ref: "original"}
	for name, change := range changes {
		s := base
		s.CACerts = append([][]byte(nil), base.CACerts...)
		change(&s)
		got := DefaultRef(s)
		if prev, dup := seen[got]; dup {
			t.Errorf("changing %s gives %s, the same tag as %s", name, got, prev)
		}
		seen[got] = name
	}

	// A registry base does not use the mirror, so it must not split the cache.
	reg := Spec{Base: "debian:bookworm-slim"}
	withMirror := reg
	withMirror.Mirror = "http://mirror.example/debian"
	if DefaultRef(reg) != DefaultRef(withMirror) {
		t.Errorf("mirror changed the tag of an image whose base is pulled")
	}
}

func TestBaseRef(t *testing.T) {
	a, b := BaseRef("http://deb.debian.org/debian"), BaseRef("http://mirror.example/debian")
	if !regexp.MustCompile(`^airlock-base:bookworm-[0-9a-f]{12}$`).MatchString(a) {
		t.Errorf("BaseRef = %q, want airlock-base:bookworm-<12 hex>", a)
	}
	if a == b {
		t.Errorf("different mirrors share base tag %s", a)
	}
}

func TestDockerfile(t *testing.T) {
	df := dockerfile(Spec{Base: "debian:bookworm-slim", Version: "9.9.9", CACerts: [][]byte{[]byte("x")}})
	for _, want := range []string{
		"FROM debian:bookworm-slim\n",
		"@anthropic-ai/claude-code@9.9.9",
		"COPY ca/ /usr/local/share/ca-certificates/airlock/",
		`ENTRYPOINT ["/usr/bin/tini", "--"]`,
		"USER agent\n",
		"WORKDIR /workspace\n",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q:\n%s", want, df)
		}
	}
	if df := dockerfile(Spec{Base: "debian:bookworm-slim", Version: "9.9.9"}); strings.Contains(df, "COPY ca/") {
		t.Errorf("Dockerfile copies a CA directory that the context will not have:\n%s", df)
	}
}

func TestSanitizeName(t *testing.T) {
	tests := map[string]string{
		"airlock":                "airlock",
		"My Project":             "my-project",
		"--weird__Name..":        "weird-name",
		"日本":                     "project",
		"a.b":                    "a-b",
		strings.Repeat("x", 100): strings.Repeat("x", 64),
	}
	for in, want := range tests {
		if got := sanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Editing a prompt, the config or the env file must not make the project
// image stale; editing a file the Dockerfile can COPY must.
func TestProjectRefIgnoresAirlocksOwnFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "ARG AIRLOCK_BASE\nFROM ${AIRLOCK_BASE}\nCOPY tool.sh /usr/local/bin/\n")
	write("tool.sh", "echo 1\n")
	write("prompts/fix.md", "Fix it.\n")
	write("config.toml", "")
	ref := func() string {
		t.Helper()
		r, err := ProjectRef("airlock-claude:abc", dir)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	before := ref()
	write("prompts/fix.md", "Fix it better.\n")
	write("prompts/new.md", "New task.\n")
	write("config.toml", "[agent]\nmodel = \"x\"\n")
	write("env", "TOKEN=secret\n")
	write("me.local.toml", "")
	if got := ref(); got != before {
		t.Errorf("airlock's own files changed the project image tag: %s -> %s", before, got)
	}
	write("tool.sh", "echo 2\n")
	if got := ref(); got == before {
		t.Errorf("a context file changed but the tag did not")
	}
}
