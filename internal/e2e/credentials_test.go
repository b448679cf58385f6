package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// A stored credential reaches the model and nowhere it should not: not the
// agent's command line, not the image, the repository or the logs.
func TestStoredCredentialStaysOutOfSightAndReachesTheModel(t *testing.T) {
	e := newEnv(t)
	srv, url := e.server(testkit.DemoScript())
	const secret = "sk-ant-stored-e2e-0123456789abcdef"
	e.extra = []string{"ANTHROPIC_BASE_URL=" + url}

	cfgDir := t.TempDir()
	cmd := exec.Command(shared.bin, "credentials", "set")
	cmd.Dir = e.repo
	cmd.Env = append(e.environ(), "XDG_CONFIG_HOME="+cfgDir)
	cmd.Stdin = strings.NewReader(secret + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("credentials set: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(cfgDir, "airlock", "credentials"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
	// The run uses the stored key; the test config is copied beside it.
	data, _ := os.ReadFile(filepath.Join(shared.configDir, "airlock", "config.toml"))
	os.WriteFile(filepath.Join(cfgDir, "airlock", "config.toml"), data, 0o644)
	run := exec.Command(shared.bin, "run", "-m", "Write hello.py.", "--name", "creds")
	run.Dir = e.repo
	run.Env = append(e.environ(), "XDG_CONFIG_HOME="+cfgDir)
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Run(); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), secret) {
		t.Error("the key was printed")
	}
	got := false
	for _, r := range srv.Requests() {
		got = got || r.APIKey() == secret
	}
	if !got {
		t.Fatal("the model server never received the stored key")
	}
	r := e.runs()[0]
	inspect, err := exec.Command("docker", "inspect", "--format", "{{json .Path}} {{json .Args}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.Env}}", r.Container).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect: %v\n%s", err, inspect)
	}
	if strings.Contains(string(inspect), secret) {
		t.Errorf("the key is in the agent container's command line or environment: %s", inspect)
	}
	hist, _ := exec.Command("docker", "history", "--no-trunc", r.Image).CombinedOutput()
	if strings.Contains(string(hist), secret) {
		t.Error("the key is in the image")
	}
	runDir := filepath.Join(e.state, "airlock", "runs", r.ID)
	filepath.Walk(runDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(secret)) {
				t.Errorf("the key is in %s", p)
			}
		}
		return nil
	})
	if out, _ := exec.Command("git", "-C", e.repo, "log", "--all", "-p").CombinedOutput(); bytes.Contains(out, []byte(secret)) {
		t.Error("the key is in the repository")
	}
}
