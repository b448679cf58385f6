package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// registerCompletions teaches shell completion (airlock completion
// bash|zsh|fish) the arguments cobra cannot know: run IDs and names for
// commands taking RUN, prompt names for run. Wired here, in one place, so
// commands stay about what they do.
func registerCompletions(f *Factory, root *cobra.Command) {
	runs := map[string]int{ // command path -> how many RUN arguments (-1: any)
		"merge": 1, "push": 1, "pr": 1, "logs": 1, "wait": -1, "rm": -1, "stop": 1, "kill": 1, "start": 1,
		"egress": 1, "attach": 1, "tmux send": 1, "tmux capture": 1, "shell": 1,
	}
	for path, n := range runs {
		if cmd, _, err := root.Find(strings.Fields(path)); err == nil && cmd != root {
			cmd.ValidArgsFunction = f.completeRunArgs(n, cobra.ShellCompDirectiveNoFileComp)
		}
	}
	// After RUN come paths (diff -- PATH) or a command (exec -- CMD): the
	// shell's own completion.
	for _, name := range []string{"diff", "exec"} {
		if cmd, _, err := root.Find([]string{name}); err == nil && cmd != root {
			cmd.ValidArgsFunction = f.completeRunArgs(1, cobra.ShellCompDirectiveDefault)
		}
	}
	if cmd, _, err := root.Find([]string{"run"}); err == nil && cmd != root {
		cmd.ValidArgsFunction = f.completePrompts
		cmd.RegisterFlagCompletionFunc("resume", f.completeRunArgs(-1, cobra.ShellCompDirectiveNoFileComp))
	}
}

// completeRunArgs completes up to n RUN arguments (n < 0: any number), and
// then gives directive.
func (f *Factory) completeRunArgs(n int, then cobra.ShellCompDirective) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if n >= 0 && len(args) >= n {
			return nil, then
		}
		all, _ := cmd.Flags().GetBool("all-projects")
		return f.runCompletions(ctxOf(cmd), toComplete, all), cobra.ShellCompDirectiveNoFileComp
	}
}

// runCompletions lists the IDs and names of the runs a RUN argument can
// name (this project's, or every project's), newest first, removed runs
// left out.
func (f *Factory) runCompletions(ctx context.Context, prefix string, allProjects bool) []cobra.Completion {
	st, err := f.Store()
	if err != nil {
		return nil
	}
	project := ""
	if !allProjects {
		if project, err = f.project(ctx); err != nil {
			return nil
		}
	}
	runs, err := st.List()
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	names := map[string]bool{}
	for _, r := range runs {
		if project != "" && r.Project != project || r.Removed() {
			continue
		}
		if strings.HasPrefix(r.ID, prefix) {
			out = append(out, cobra.CompletionWithDesc(r.ID, r.Name+", "+string(r.Status)))
		}
		if r.Name != "" && r.Name != r.ID && !names[r.Name] && strings.HasPrefix(r.Name, prefix) {
			names[r.Name] = true
			out = append(out, cobra.CompletionWithDesc(r.Name, "latest run: "+r.ID))
		}
	}
	return out
}

// completePrompts completes TASK with the project's prompt names
// (.airlock/prompts/NAME.md), and prompt files by path.
func (f *Factory) completePrompts(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	project, err := f.project(ctxOf(cmd))
	if err != nil {
		return nil, cobra.ShellCompDirectiveDefault
	}
	entries, err := os.ReadDir(filepath.Join(project, ".airlock", "prompts"))
	if err != nil {
		return nil, cobra.ShellCompDirectiveDefault
	}
	var out []cobra.Completion
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".md")
		if !ok || name == "" || !e.Type().IsRegular() || !strings.HasPrefix(name, toComplete) {
			continue
		}
		out = append(out, cobra.CompletionWithDesc(name, "prompt .airlock/prompts/"+e.Name()))
	}
	// A path to a prompt file is a TASK too: let the shell offer files
	// when no prompt name fits.
	if len(out) == 0 {
		return nil, cobra.ShellCompDirectiveDefault
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

func ctxOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
