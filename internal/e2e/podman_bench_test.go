package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// BenchmarkPodmanRun times a whole minimal run, one model turn, on Podman:
// `airlock run` from start to its summary, against the same agent (the
// same image, Claude Code, prompt and model server) in a bare `podman run`,
// on rootful Podman (as root) and on rootless Podman (as the test user,
// with the keep-id user namespace airlock uses there). `make bench` prints
// them and the ratios.
//
// The bare agent has no network either: it reaches the model server through
// a Unix socket mounted from the host and a forwarder on its loopback, as
// airlock's agent reaches its proxy.
func BenchmarkPodmanRun(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	needPodman(b)
	image := rootfulPodmanImage(b)
	u := rootlessUser(b)
	rootlessPodmanImage(b, u)

	srv := testkit.NewServer(testkit.Script{Name: "quick", FinalText: "ok"})
	url, err := srv.Start(shared.gateway + ":0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	sockDir := unixForward(b, strings.TrimPrefix(url, "http://"))

	// A project and state directory for each Podman: root's, and the test
	// user's.
	type project struct{ repo, state string }
	var projects [2]project
	for i := range projects {
		base, err := os.MkdirTemp("", "airlock-bench-podman-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(base)
		projects[i] = project{filepath.Join(base, "repo"), filepath.Join(base, "state")}
		initRepoB(b, &env{repo: projects[i].repo})
		if i == 1 {
			if out, err := exec.Command("chown", "-R", u.Uid+":"+u.Gid, base).CombinedOutput(); err != nil {
				b.Fatalf("chown: %v\n%s", err, out)
			}
		}
	}
	vars := func(p project) []string {
		return []string{"XDG_STATE_HOME=" + p.state, "XDG_CONFIG_HOME=" + shared.configDir,
			"ANTHROPIC_API_KEY=sk-ant-bench", "ANTHROPIC_BASE_URL=" + url}
	}

	bare := func(rootless bool, runtime string) func(b *testing.B) {
		return func(b *testing.B) {
			var args []string
			if runtime != "" {
				// Podman's CLI takes the runtime as its own flag; it runs
				// runsc as registered in containers.conf, as airlock does.
				args = []string{"--runtime", runtime}
			}
			args = append(args, "run", "--rm", "--network", "none", "-v", sockDir+":/s",
				"-e", "ANTHROPIC_API_KEY=sk-ant-bench", "-e", "ANTHROPIC_BASE_URL=http://127.0.0.1:8080")
			if rootless {
				args = append(args, "--userns", "keep-id")
			} else {
				args = append(args, "--user", "1000:1000")
			}
			for _, kv := range (agent.Claude{}).Env(agent.Options{}) {
				if strings.HasPrefix(kv, "HOME=") {
					kv = "HOME=/tmp"
				}
				args = append(args, "-e", kv)
			}
			args = append(args, image, "node", "-e", bareForwarder)
			for b.Loop() {
				cmd := exec.Command("podman", args...)
				if rootless {
					cmd = rootlessCmd(u, "", nil, "podman", args...)
				}
				out, err := cmd.CombinedOutput()
				if err != nil || !strings.Contains(string(out), "ok") {
					b.Fatalf("podman run (rootless %v): %v\n%s", rootless, err, out)
				}
			}
		}
	}
	whole := func(rootless bool, runtime string) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				args := []string{"run", "-y", "-m", "hi", "--name", "bench"}
				if runtime != "" {
					args = append(args, "--runtime", runtime)
				}
				cmd := exec.Command(shared.bin, args...)
				cmd.Dir, cmd.Env = projects[0].repo, append(os.Environ(), append(vars(projects[0]), "AIRLOCK_ENGINE=podman")...)
				if rootless {
					cmd = rootlessCmd(u, projects[1].repo, vars(projects[1]), shared.bin, args...)
				}
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("airlock run (rootless %v): %v\n%s", rootless, err, out)
				}
			}
		}
	}
	b.Run("bare-rootful", bare(false, ""))
	b.Run("airlock-rootful", whole(false, ""))
	b.Run("bare-rootless", bare(true, ""))
	b.Run("airlock-rootless", whole(true, ""))
	// gVisor (docs/gvisor.md), where Podman has it.
	p, err := sandbox.NewPodman("")
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := sandbox.CheckRuntime(context.Background(), p, "runsc"); err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatalf("CI needs gVisor on Podman (scripts/setup.sh): %v", err)
		}
		b.Logf("no gVisor figures: %v", err)
		return
	}
	b.Run("gvisor-bare-rootful", bare(false, "runsc"))
	b.Run("gvisor-airlock-rootful", whole(false, "runsc"))
	b.Run("gvisor-bare-rootless", bare(true, "runsc"))
	b.Run("gvisor-airlock-rootless", whole(true, "runsc"))
	b.StopTimer()
	// Remove the runs' containers, on each Podman.
	for i, p := range projects {
		runs, _ := os.ReadDir(filepath.Join(p.state, "airlock", "runs"))
		for _, r := range runs {
			// One at a time: given a name it does not know, Podman 4.3's
			// rm removes none of the others (and exits 0).
			for _, name := range []string{"airlock-" + r.Name(), "airlock-" + r.Name() + "-proxy"} {
				cmd := exec.Command("podman", "rm", "-f", name)
				if i == 1 {
					cmd = rootlessCmd(u, "", nil, "podman", "rm", "-f", name)
				}
				cmd.Run()
			}
		}
	}
}
