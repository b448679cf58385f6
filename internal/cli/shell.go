package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/run"
)

type shellOptions struct {
	Here       bool
	Persistent bool
	Resume     bool
	ResumeRef  string
	Detach     bool
	Yes        bool
	Name       string
	Branch     string
	Agent      string
	Profile    string
	Model      string
	Image      string
	Network    string
	Runtime    string
	Env        []string
	Allow      []string
	GitAuth    string
	Ports      []string

	set map[string]bool
}

func newShellCmd(f *Factory) *cobra.Command {
	var opts shellOptions
	cmd := &cobra.Command{
		Use:     "shell [--resume [RUN]]",
		Aliases: []string{"interactive"},
		Short:   "Work with the agent in its own terminal UI, in a new sandbox",
		Long: `Start Claude Code's own terminal UI in a sandbox, on a fresh copy of this
repository (branch airlock/<run>), and attach your terminal to it.

The agent runs in tmux inside the sandbox: Ctrl-b d detaches and leaves it
running (airlock attach comes back), Ctrl-C goes to the agent. When the agent
exits (/exit), the run finishes like any other: review it with diff, take it
with merge. The first-run dialogs are answered for you: the sandbox is the
permission boundary, so the agent runs with --dangerously-skip-permissions.

  --here        work on the live project directory instead of a copy: the
                agent changes your files directly; there is nothing to diff,
                merge or undo afterwards (explicit opt-in)
  --resume      continue the conversation of this project's latest run, or
                of RUN, on that run's work (its branch and uncommitted
                changes) and under its name
  --persistent  keep the container after the agent exits
  -d            start it without attaching (attach later, or drive it with
                airlock tmux send/capture)

The egress policy, credentials and limits are those of airlock run. Budget
limits (max cost, timeout) do not apply to interactive sessions.`,
		Example: `  airlock shell
  airlock shell --here
  airlock shell --resume
  airlock shell -d --name review && airlock attach review`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && !opts.Resume {
				return flagErrorf("shell takes no arguments; did you mean --resume %s?", args[0])
			}
			if opts.Resume && opts.Branch != "" && !opts.Here {
				return flagErrorf("--branch and --resume: a resumed session continues on the earlier run's branch")
			}
			opts.ResumeRef = firstArg(args)
			if !opts.Detach && !f.IO.StdinTTY {
				return flagErrorf("airlock shell needs a terminal: start it with -d and drive it with `airlock tmux send` and `airlock tmux capture`, or `airlock attach` from a terminal")
			}
			opts.set = map[string]bool{}
			cmd.Flags().Visit(func(fl *pflag.Flag) { opts.set[fl.Name] = true })
			return shellRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&opts.Here, "here", false, "work on the live project directory, not a copy (no diff, merge or undo)")
	fl.BoolVar(&opts.Persistent, "persistent", false, "keep the container after the agent exits (airlock start brings it back)")
	fl.BoolVar(&opts.Resume, "resume", false, "continue the conversation of the latest run of this project, or of RUN")
	fl.BoolVarP(&opts.Detach, "detach", "d", false, "start without attaching; print the run ID")
	fl.BoolVarP(&opts.Yes, "yes", "y", false, "do not ask to confirm the egress policy")
	fl.StringVar(&opts.Name, "name", "shell", "run name (with --resume: the earlier run's)")
	fl.StringVar(&opts.Branch, "branch", "", "base branch (default: the current branch)")
	fl.StringVar(&opts.Agent, "agent", "", "the agent to run: "+strings.Join(agent.Names(), ", ")+" (default from config)")
	fl.StringVar(&opts.Profile, "profile", "", "apply the named profile (airlock profile ls)")
	fl.StringVar(&opts.Model, "model", "", "model for the agent")
	fl.StringVar(&opts.Image, "image", "", "image to run the agent in")
	fl.StringVar(&opts.Network, "network", "", "egress mode: allowlist (default), restricted, or open")
	fl.StringVar(&opts.Runtime, "runtime", "", "OCI runtime for the agent's container, such as runsc (gVisor)")
	fl.StringArrayVarP(&opts.Env, "env", "e", nil, "pass NAME from your environment, or set NAME=value (repeatable)")
	fl.StringArrayVar(&opts.Allow, "allow", nil, "also let the agent reach this host pattern (repeatable)")
	fl.StringArrayVarP(&opts.Ports, "publish", "p", nil, "forward the sandbox's TCP port to the host's loopback: PORT or HOSTPORT:PORT (repeatable)")
	addGitAuthFlag(fl, &opts.GitAuth)
	return cmd
}

func shellRun(ctx context.Context, f *Factory, opts shellOptions) error {
	project, err := f.project(ctx)
	if err != nil {
		return err
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	// The request is a run's, less the prompt: the person types it. It is
	// checked as a run's is, before anything is asked or made.
	ro := runOptions{
		Message: "interactive session",
		Name:    opts.Name,
		Branch:  opts.Branch,
		Agent:   opts.Agent,
		Profile: opts.Profile,
		Model:   opts.Model,
		Image:   opts.Image,
		Network: opts.Network,
		Runtime: opts.Runtime,
		Env:     opts.Env,
		Allow:   opts.Allow,
		GitAuth: opts.GitAuth,
		Ports:   opts.Ports,
		set:     opts.set,
		here:    opts.Here,
	}
	if opts.Resume {
		if ro.resumeFrom, err = f.resumeSource(ctx, m, project, opts.ResumeRef); err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
	}
	req, cfg, policyText, err := f.buildRequest(ctx, project, ro)
	if err != nil {
		return err
	}
	req.Kind = run.KindShell
	req.PromptSource = "shell"
	req.Prompt = ""
	// A person is at the wheel: a cost or time budget would cut them off
	// mid-sentence, and interactive Claude Code reports no running cost.
	req.Budget = run.Budget{}
	req.Persistent = opts.Persistent
	if err := m.Check(ctx, req); err != nil {
		return err
	}
	fmt.Fprint(f.IO.ErrOut, policyText)
	if opts.Here {
		fmt.Fprintf(f.IO.ErrOut, "Warning: --here mounts %s itself at /workspace. The agent changes your files directly:\n"+
			"there is no copy to review, diff or merge, and airlock cannot undo anything. Commit first if you want a way back.\n", project)
	}
	if _, err := f.confirmStart("session", cfg.Egress.Confirm, opts.Yes); err != nil {
		return err
	}
	r, err := m.Start(ctx, req)
	if err != nil {
		return err
	}
	f.startWatcher(m, r)
	if opts.Detach {
		fmt.Fprintln(f.IO.Out, r.ID)
		fmt.Fprintf(f.IO.ErrOut, "Started %s. Attach with `airlock attach %s`.\n", r.ID, r.ID)
		return nil
	}
	return f.attachRun(ctx, m, r)
}
