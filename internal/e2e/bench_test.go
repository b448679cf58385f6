package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// BenchmarkStartup compares the time from `airlock run -d` to the agent's
// process running in its container (the command returns once the container
// is started) with a bare `docker run --rm IMAGE true` on the same image.
// `make bench` prints the ratio (target: at most 1.5).
func BenchmarkStartup(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	e, _, image := quickBench(b)

	b.Run("bare", func(b *testing.B) {
		for b.Loop() {
			if out, err := exec.Command("docker", "run", "--rm", image, "true").CombinedOutput(); err != nil {
				b.Fatalf("docker run: %v\n%s", err, out)
			}
		}
	})
	var ids []string
	b.Run("airlock", func(b *testing.B) {
		for b.Loop() {
			cmd := exec.Command(shared.bin, "run", "-d", "-m", "hi", "--name", "bench")
			cmd.Dir = e.repo
			cmd.Env = e.environ()
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("airlock run -d: %v", err)
			}
			ids = append(ids, strings.TrimSpace(string(out)))
		}
	})
	b.StopTimer()
	for _, id := range ids {
		rm := exec.Command(shared.bin, "rm", "-y", "--force", id)
		rm.Dir = e.repo
		rm.Env = e.environ()
		rm.Run()
	}
}

// quickBench is the set-up the run benchmarks share: a project repository,
// the scripted model server answering one turn ("ok") on the gateway with
// airlock pointed at it, and the default image, built or found. It returns
// the environment, the server's URL and the image.
func quickBench(b *testing.B) (*env, string, string) {
	b.Helper()
	e := &env{state: b.TempDir(), repo: b.TempDir() + "/repo"}
	initRepoB(b, e)
	srv := testkit.NewServer(testkit.Script{Name: "quick", FinalText: "ok"})
	url, err := srv.Start(shared.gateway + ":0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	e.extra = []string{"ANTHROPIC_API_KEY=sk-ant-bench", "ANTHROPIC_BASE_URL=" + url}
	build := exec.Command(shared.bin, "image", "build")
	build.Env = e.environ()
	out, err := build.Output()
	if err != nil {
		b.Fatal(err)
	}
	return e, url, strings.TrimSpace(string(out))
}

func initRepoB(b *testing.B, e *env) {
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", e.repo},
		{"-C", e.repo, "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-q", "--allow-empty", "-m", "initial"},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}
