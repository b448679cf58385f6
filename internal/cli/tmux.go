package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

func newTmuxCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tmux",
		Short: "Type into and read the screen of an interactive session",
		Long: `Drive an interactive run's agent (airlock shell) without attaching: send
types text into its terminal, capture prints what its screen shows.`,
	}
	cmd.AddCommand(newTmuxSendCmd(f), newTmuxCaptureCmd(f))
	return cmd
}

func newTmuxSendCmd(f *Factory) *cobra.Command {
	var enter bool
	cmd := &cobra.Command{
		Use:   "send RUN TEXT",
		Short: "Type TEXT into the agent's terminal",
		Long: `Type TEXT into the agent's terminal, literally: key names in it are not
interpreted. --enter then presses Enter, which submits a prompt to the agent.`,
		Example: `  airlock tmux send shell "Fix the failing test" --enter`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return flagErrorf("give a run and the text: airlock tmux send RUN TEXT [--enter]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := f.shellSession(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return s.SendKeys(cmd.Context(), args[1], enter)
		},
	}
	cmd.Flags().BoolVar(&enter, "enter", false, "press Enter after the text")
	return cmd
}

// captureJSON is tmux capture --json's output.
type captureJSON struct {
	Run    string   `json:"run"`
	Width  uint     `json:"width"`
	Height uint     `json:"height"`
	Lines  []string `json:"lines"`
}

func newTmuxCaptureCmd(f *Factory) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "capture [RUN]",
		Short: "Print what the agent's terminal shows",
		Args:  exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := f.shellSession(ctx, firstArg(args))
			if err != nil {
				return err
			}
			screen, err := s.Capture(ctx)
			if err != nil {
				return err
			}
			if !asJSON {
				if f.IO.StdoutTTY { // the screen is the agent's to fill
					screen = untrusted.Text(screen)
				}
				_, err := fmt.Fprint(f.IO.Out, screen)
				return err
			}
			size, err := s.Size(ctx)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(f.IO.Out)
			enc.SetIndent("", "  ")
			return enc.Encode(captureJSON{Run: s.Run.ID, Width: size.Width, Height: size.Height,
				Lines: strings.Split(strings.TrimSuffix(screen, "\n"), "\n")})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {run, width, height, lines} as JSON")
	return cmd
}

// shellSession resolves RUN to a running interactive session.
func (f *Factory) shellSession(ctx context.Context, ref string) (*run.Session, error) {
	r, err := f.resolveSession(ctx, ref)
	if err != nil {
		return nil, err
	}
	m, err := f.manager()
	if err != nil {
		return nil, err
	}
	if err := run.RequireShell(r); err != nil {
		return nil, err
	}
	s, err := m.Session(ctx, r)
	if err != nil {
		return nil, err
	}
	return s, nil
}
