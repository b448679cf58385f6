// Package cli is airlock's command line: each command is a thin adapter that
// turns flags into an options struct and calls a run function with injected
// I/O; the work happens in the domain packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/untrusted"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// Main runs airlock and returns the process's exit status. It is the only
// place that maps errors to exit statuses.
func Main() int {
	// An Incus instance's init: PID 1, before any of the CLI's signal
	// handling or configuration.
	if len(os.Args) > 1 && os.Args[1] == sandbox.IncusInitCommand {
		return sandbox.IncusInit(os.Args[2:], os.Stderr)
	}
	// A Kubernetes pod's init: PID 1 of its agent container.
	if len(os.Args) > 1 && os.Args[1] == sandbox.KubernetesInitCommand {
		return sandbox.KubernetesInit(os.Args[2:], os.Stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal cancels ctx and the command winds down (an attached
	// run stops its agent first); a second one kills at once, as it would
	// any program, so no command can be stuck beyond the user's reach.
	go func() {
		<-ctx.Done()
		stop()
	}()
	f := NewFactory()
	cmd := NewRootCmd(f)
	err := cmd.ExecuteContext(ctx)
	f.closeEngine()
	return exitStatus(f, err)
}

func exitStatus(f *Factory, err error) int {
	if err == nil {
		return ExitOK
	}
	var exitErr *ExitError
	var flagErr *FlagError
	switch {
	case errors.As(err, &exitErr):
		if exitErr.Message != "" {
			fmt.Fprintln(f.IO.ErrOut, "airlock:", untrusted.Text(exitErr.Message))
		}
		return exitErr.Code
	case errors.Is(err, errSilent):
		return ExitFailure
	case errors.As(err, &flagErr):
		fmt.Fprintln(f.IO.ErrOut, "airlock:", err)
		return ExitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(f.IO.ErrOut, "airlock: interrupted")
		return ExitCanceled
	}
	// Errors can quote what the agent chose (commit subjects, file and
	// branch names, git's messages about them): never raw on a terminal.
	fmt.Fprintln(f.IO.ErrOut, "airlock:", untrusted.Text(err.Error()))
	return ExitFailure
}

// NewRootCmd builds the command tree.
func NewRootCmd(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:   "airlock",
		Short: "Run AI coding agents autonomously in isolated containers",
		Long: `airlock runs an AI coding agent (Claude Code) on its own copy of your repository,
in a hardened container, and lets you review and merge its work when you choose.

  airlock init                 set up .airlock/ in this repository
  airlock image build          build the default agent image
  airlock run TASK             run the agent on .airlock/prompts/TASK.md
  airlock logs / diff / merge  review and take the work
  airlock demo                 see the whole pipeline work, no API key needed`,
		Version:       versionText(debug.ReadBuildInfo()),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// --version without cobra's -v shorthand: -v is verbosity in run and
	// logs, and must not mean something else one level up.
	root.Flags().Bool("version", false, "print airlock's version and commit")
	root.SetVersionTemplate("{{.Version}}\n")
	root.PersistentFlags().StringVar(&f.EngineKind, "engine", "", "container engine: docker, podman, incus or kubernetes (default: [engine] kind, else detected)")
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &FlagError{err: fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())}
	})
	root.AddCommand(
		newInitCmd(f),
		newImageCmd(f),
		newRunCmd(f),
		newShellCmd(f),
		newAttachCmd(f),
		newExecCmd(f),
		newCpCmd(f),
		newTmuxCmd(f),
		newAgentHookCmd(f),
		newLsCmd(f),
		newLogsCmd(f),
		newWaitCmd(f),
		newWatchCmd(f),
		newDiffCmd(f),
		newMergeCmd(f),
		newPushCmd(f),
		newPRCmd(f),
		newStartCmd(f),
		newStopCmd(f),
		newKillCmd(f),
		newRmCmd(f),
		newCleanCmd(f),
		newConfigCmd(f),
		newProfileCmd(f),
		newDoctorCmd(f),
		newNetprobeCmd(f),
		newDemoCmd(f),
		newCredentialsCmd(f),
		newEgressCmd(f),
		newProxyCmd(f),
		newRelayCmd(f),
		newConnectCmd(f),
		newWatcherCmd(f),
		newPrewarmCmd(f),
		newUICmd(f),
		newVersionCmd(f),
	)
	registerCompletions(f, root)
	return root
}

// project finds the root of the git repository the user is in.
func (f *Factory) project(ctx context.Context) (string, error) {
	wd, err := f.Getwd()
	if err != nil {
		return "", err
	}
	root, err := workspace.RepoRoot(ctx, wd)
	if err != nil {
		return "", fmt.Errorf("%s is not inside a git repository: airlock runs agents on a copy of one (cd into it, or `git init`)", wd)
	}
	return root, nil
}

// manager builds the run manager. It does not contact the engine yet.
func (f *Factory) manager() (*run.Manager, error) {
	st, err := f.Store()
	if err != nil {
		return nil, err
	}
	eng, err := f.Engine()
	if err != nil {
		return nil, err
	}
	return &run.Manager{
		Store:    st,
		Engine:   eng,
		Caps:     f.caps,
		UID:      f.UID,
		GID:      f.GID,
		Now:      f.Now,
		Progress: f.IO.ErrOut,

		ResolveSecret:    f.resolveSecret,
		CloudCredentials: f.cloudFetcher(),
	}, nil
}

func exactlyOneOrNone(cmd *cobra.Command, args []string) error {
	if len(args) > 1 {
		return flagErrorf("%s takes at most one run, got %d", cmd.CommandPath(), len(args))
	}
	return nil
}

func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}
