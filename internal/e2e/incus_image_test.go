package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestIncusImageBuild builds the real agent image on Incus with the CLI
// (`airlock image build --engine incus`: the debootstrap base imported, the
// default Dockerfile run in a build instance that installs packages and
// Claude Code through the bridge's NAT, the result published), lists it,
// and runs the pinned Claude Code in an instance of it as the image's user,
// through its entrypoint (tini), with its environment.
func TestIncusImageBuild(t *testing.T) {
	if shared.skip != "" {
		t.Skip("no container engine: ", shared.skip)
	}
	inc := testkit.Incus(t) // fails on CI when Incus does not answer
	inc.UseBinary(shared.bin)
	ctx := context.Background()

	cmd := exec.Command(shared.bin, "image", "build", "--engine", "incus")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+shared.configDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("airlock image build --engine incus: %v\n%s", err, tail(stderr.String(), 40))
	}
	ref := strings.TrimSpace(stdout.String())
	t.Logf("built or found %s on Incus in %s", ref, time.Since(start).Round(time.Second))
	if !regexp.MustCompile(`^airlock-claude:[0-9a-f]{12}$`).MatchString(ref) {
		t.Fatalf("image build printed %q, want airlock-claude:<12 hex>", ref)
	}

	ls := exec.Command(shared.bin, "image", "ls", "--engine", "incus")
	ls.Env = cmd.Env
	out, err := ls.CombinedOutput()
	if err != nil {
		t.Fatalf("airlock image ls --engine incus: %v\n%s", err, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ref) + `\s+[0-9a-f]{12}\s+\S+\s+\S+\s+current$`),
		regexp.MustCompile(`(?m)^airlock-claude:latest\s+[0-9a-f]{12}\s+\S+\s+\S+\s+latest$`),
		regexp.MustCompile(`(?m)^airlock-base:bookworm-[0-9a-f]{12}\s+[0-9a-f]{12}\s+\S+\s+\S+\s+base$`),
	} {
		if !want.Match(out) {
			t.Errorf("image ls lacks %s:\n%s", want, out)
		}
	}

	// The image as a sandbox would run it: Create applies its properties.
	name := "airlock-test-incusimage-claude"
	inc.Remove(ctx, name)
	t.Cleanup(func() { inc.Remove(context.Background(), name) })
	if _, err := inc.Create(ctx, sandbox.Spec{
		Name: name, Image: ref, User: "1000:1000",
		Cmd: []string{"sh", "-c", `claude --version; id -un; echo "HOME=$HOME"; cat /proc/1/cmdline | tr '\0' ' '; echo; ps -o args= -p $PPID`},
	}); err != nil {
		t.Fatalf("Create from %s: %v", ref, err)
	}
	if err := inc.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	code, err := inc.Wait(wctx, name)
	var logs bytes.Buffer
	inc.Logs(ctx, name, &logs)
	if err != nil || code != 0 {
		t.Fatalf("claude --version in %s: exit %d, %v\n%s", ref, code, err, logs.String())
	}
	got := logs.String()
	for _, want := range []string{image.DefaultClaudeVersion + " (Claude Code)", "\nagent\n", "HOME=/home/agent", "tini"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
