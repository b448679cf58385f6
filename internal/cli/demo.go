package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// demoKey is what the demo's proxy injects; the scripted model accepts any.
const demoKey = "sk-ant-demo-not-a-real-key"

type demoOptions struct {
	Keep bool
}

func newDemoCmd(f *Factory) *cobra.Command {
	var opts demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "See the whole pipeline work, without an API key",
		Long: `Run the real pipeline on a throw-away repository: the real Claude Code CLI in
the real image and a hardened container, talking to a scripted model server
built into airlock (it speaks the Anthropic Messages API and replays a fixed
task: write a file, run it, commit). Then show the logs and the diff, merge the
run's branch into the throw-away repository and remove the run.

Needs the container engine and the default image (airlock image build).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return demoRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "keep the throw-away repository and the run")
	return cmd
}

func demoRun(ctx context.Context, f *Factory, opts demoOptions) error {
	out := f.IO.ErrOut
	eng, err := f.PingedEngine(ctx)
	if err != nil {
		return err
	}
	res, err := f.loadConfig("")
	if err != nil {
		return err
	}
	ref, err := f.imageRef("", res)
	if err != nil {
		return err
	}
	if ok, err := eng.ImageExists(ctx, ref); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("image %s not found: build it first with `airlock image build` (add `--base bootstrap` where no image registry is reachable)", ref)
	}

	repo, err := demoRepo(ctx)
	if err != nil {
		return err
	}
	if !opts.Keep {
		defer os.RemoveAll(repo)
	}
	caps, err := f.EngineCaps()
	if err != nil {
		return err
	}
	if caps.Host == nil {
		return caps.Missing("tell where its sandboxes reach the host, which the demo's model server needs")
	}
	gw, err := caps.Host.HostAddress(ctx)
	if err != nil {
		return err
	}
	srv := testkit.NewServer(testkit.DemoScript())
	url, err := srv.Start(gw + ":0")
	if err != nil {
		return fmt.Errorf("start the demo's model server: %w", err)
	}
	defer srv.Close()
	fmt.Fprintf(out, "== A throw-away repository: %s\n== A scripted model server (no API key needed): %s\n\n", repo, url)

	m, err := f.manager()
	if err != nil {
		return err
	}
	r, err := m.Start(ctx, run.Request{
		Project:      repo,
		Name:         "demo",
		PromptSource: "demo",
		Prompt:       "Write hello.py that prints a greeting, run it, and commit it.",
		BaseBranch:   "main",
		Image:        ref,
		Limits:       sandbox.Limits{MemoryBytes: 2 << 30, CPUs: 2, Pids: 1024},
		DiskBytes:    config.DefaultDiskBytes,
		Egress: run.Egress{
			Mode:        "allowlist",
			APIUpstream: url,
			Auth: agent.APIAuth{
				Headers: map[string]string{"X-Api-Key": demoKey},
				Env:     []string{"ANTHROPIC_API_KEY=" + agent.PlaceholderAPIKey},
				Secret:  demoKey,
			},
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n== airlock logs %s\n", r.ID)
	if err := showLog(ctx, f, m, r, logsOptions{Follow: true, Verbosity: 1}); err != nil {
		return err
	}
	if r, err = m.Wait(ctx, r); err != nil {
		return err
	}
	if err := outcome(f, r); err != nil {
		fmt.Fprintf(out, "The demo run did not succeed; its logs: airlock logs %s\n", r.ID)
		return err
	}
	fmt.Fprintf(out, "\n== airlock diff %s\n", r.ID)
	if err := m.Diff(ctx, r, workspace.DiffOptions{Color: f.IO.StdoutTTY}, f.IO.Out); err != nil {
		return err
	}
	res2, r, err := m.Merge(ctx, r, workspace.MergeOptions{})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n== airlock merge %s: merged into %s (%s)\n", r.ID, res2.Into, mergeKind(res2))
	log, _ := exec.CommandContext(ctx, "git", "-C", repo, "log", "--oneline", "-3").Output()
	fmt.Fprintf(f.IO.Out, "%s", log)
	if opts.Keep {
		fmt.Fprintf(out, "\nKept the repository (%s) and the run (%s).\n", repo, r.ID)
		return nil
	}
	if _, err := m.Remove(ctx, r, false); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n== airlock rm %s: removed the container, copy and branch; the logs stay (airlock ls -a --all-projects)\n", r.ID)
	fmt.Fprintln(out, "\nThe demo worked. Next: `airlock init` in your repository, then `airlock run TASK`.")
	return nil
}

// demoRepo makes a small repository with one commit on main.
func demoRepo(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "airlock-demo-")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# demo\n\nA throw-away repository for `airlock demo`.\n"), 0o644); err != nil {
		return "", err
	}
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"add", "README.md"},
		{"-c", "user.name=airlock demo", "-c", "user.email=demo@airlock.invalid", "commit", "-q", "-m", "Initial commit"},
	} {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("make the demo repository: git %v: %v: %s", args, err, out)
		}
	}
	return dir, nil
}
