package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

func TestDockerImportAndBuild(t *testing.T) {
	d := testkit.Docker(t)
	ctx := context.Background()
	base := "airlock-test-import:1"
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", base).Run() })

	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sandboxtest.BusyboxRootfs(pw, sandboxtest.BusyboxPath)) }()
	if err := d.ImportImage(ctx, pr, base); err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	if ok, err := d.ImageExists(ctx, base); err != nil || !ok {
		t.Fatalf("imported image %s missing: %v", base, err)
	}

	t.Run("in-memory context", func(t *testing.T) {
		ref := "airlock-test-build:files"
		t.Cleanup(func() { exec.Command("docker", "rmi", "-f", ref, ref+"-alias").Run() })
		var progress bytes.Buffer
		err := d.BuildImage(ctx, sandbox.BuildRequest{
			Files: map[string][]byte{
				"build/Containerfile": []byte("FROM " + base + "\nARG GREETING\nCOPY greeting /greeting\nRUN echo \"$GREETING\" >>/greeting\n"),
				"greeting":            []byte("hello\n"),
			},
			Dockerfile: "build/Containerfile",
			Tags:       []string{ref, ref + "-alias"},
			BuildArgs:  map[string]string{"GREETING": "from a build arg"},
			Progress:   &progress,
		})
		if err != nil {
			t.Fatalf("BuildImage: %v\n%s", err, progress.String())
		}
		if out := run(t, ref, "cat", "/greeting"); out != "hello\nfrom a build arg\n" {
			t.Errorf("/greeting = %q", out)
		}
		if ok, _ := d.ImageExists(ctx, ref+"-alias"); !ok {
			t.Errorf("second tag %s missing", ref+"-alias")
		}
		// The engine's JSON stream arrives as plain text lines.
		if p := progress.String(); !strings.Contains(p, "Step 4/4 : RUN echo") || strings.Contains(p, `{"stream"`) {
			t.Errorf("progress is not the plain build output:\n%s", p)
		}
	})

	t.Run("directory context", func(t *testing.T) {
		ref := "airlock-test-build:dir"
		t.Cleanup(func() { exec.Command("docker", "rmi", "-f", ref).Run() })
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM "+base+"\nCOPY sub/ /data/\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "sub", "file"), []byte("content"), 0o600)
		if err := d.BuildImage(ctx, sandbox.BuildRequest{ContextDir: dir, Tags: []string{ref}}); err != nil {
			t.Fatalf("BuildImage: %v", err)
		}
		if out := run(t, ref, "cat", "/data/file"); out != "content" {
			t.Errorf("/data/file = %q", out)
		}
	})

	t.Run("failing step", func(t *testing.T) {
		ref := "airlock-test-build:fail"
		err := d.BuildImage(ctx, sandbox.BuildRequest{
			Files: map[string][]byte{"Dockerfile": []byte("FROM " + base + "\nRUN echo fetching parts; echo part 42 is missing >&2; exit 7\nRUN true\n")},
			Tags:  []string{ref},
		})
		var be *sandbox.BuildError
		if !errors.As(err, &be) {
			t.Fatalf("err = %v, want a *sandbox.BuildError", err)
		}
		if !strings.HasPrefix(be.Step, "Step 2/3 : RUN echo fetching parts") {
			t.Errorf("Step = %q, want the second step", be.Step)
		}
		if strings.Contains(err.Error(), "\x1b") {
			t.Errorf("error carries terminal escapes: %q", err)
		}
		for _, want := range []string{"Step 2/3", "non-zero code: 7", "part 42 is missing"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if ok, _ := d.ImageExists(ctx, ref); ok {
			t.Errorf("failed build left tag %s", ref)
		}
		// Remove/ForceRemove: no intermediate container survives the failure.
		// The engine may report the error just before its clean-up ends.
		var left []byte
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			left, _ = exec.Command("docker", "ps", "-aq", "--filter", "ancestor="+base).Output()
			if len(bytes.TrimSpace(left)) == 0 {
				break
			}
		}
		if len(bytes.TrimSpace(left)) > 0 {
			t.Errorf("failed build left containers: %s", left)
		}
	})

	t.Run("no context", func(t *testing.T) {
		if err := d.BuildImage(ctx, sandbox.BuildRequest{Tags: []string{"x:y"}}); err == nil || !strings.Contains(err.Error(), "no build context") {
			t.Errorf("err = %v, want a missing-context error", err)
		}
	})
}

func run(t *testing.T, ref string, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"run", "--rm", ref}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s %v: %v\n%s", ref, args, err, out)
	}
	return string(out)
}
