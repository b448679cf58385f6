package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

type execOptions struct {
	Capture     bool
	AllProjects bool
}

func newExecCmd(f *Factory) *cobra.Command {
	var opts execOptions
	cmd := &cobra.Command{
		Use:   "exec RUN -- CMD [ARG...]",
		Short: "Run a command in a running sandbox",
		Long: `Run a command in a running run's sandbox, as the agent's user, in
/workspace, with the sandbox's environment (and its egress proxy). With a
terminal on standard input the command gets one too.

exec exits with the command's exit status. --capture prints one JSON object
{"exit_code": N, "stdout": "...", "stderr": "..."} instead of passing the
output through, and exits 0 whatever the command's status.`,
		Example: `  airlock exec fix-auth -- npm test
  airlock exec fix-auth -- bash
  airlock exec fix-auth --capture -- git status --short`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return flagErrorf("give a run and a command after --: airlock exec RUN -- CMD [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return execRun(cmd.Context(), f, args[0], args[1:], opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Capture, "capture", false, "print {exit_code, stdout, stderr} as JSON")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

// execResult is exec --capture's output.
type execResult struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
}

func execRun(ctx context.Context, f *Factory, ref string, argv []string, opts execOptions) error {
	r, m, err := f.runAndManager(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	s, err := m.Session(ctx, r)
	if err != nil {
		return err
	}
	if opts.Capture {
		var out, errOut bytes.Buffer
		code, err := s.Exec(ctx, sandbox.ExecSpec{Cmd: argv, Stdout: &out, Stderr: &errOut})
		if err != nil {
			return err
		}
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(execResult{ExitCode: code, Stdout: out.String(), Stderr: errOut.String()})
	}
	spec := sandbox.ExecSpec{Cmd: argv, Stdin: f.IO.In, Stdout: f.IO.Out, Stderr: f.IO.ErrOut}
	if in, ok := f.IO.In.(*os.File); ok && f.IO.StdinTTY {
		fd := int(in.Fd())
		spec.TTY = true
		spec.Size = terminalSize(fd)
		spec.Env = []string{"TERM=" + s.Terminal(ctx, f.Getenv("TERM")), "LANG=C.UTF-8"}
		old, err := term.MakeRaw(fd)
		if err != nil {
			return err
		}
		defer term.Restore(fd, old)
	}
	code, err := s.Exec(ctx, spec)
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}
