package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// GitError is a failed git invocation. It carries what a user needs to see
// (the subcommand, exit code and git's own complaint) so the CLI can print it
// as is.
type GitError struct {
	Args     []string
	ExitCode int
	Stderr   string
}

func (e *GitError) Error() string {
	sub := "git"
	for _, a := range e.Args {
		if !strings.HasPrefix(a, "-") {
			sub = "git " + a
			break
		}
	}
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		return fmt.Sprintf("%s: exit %d", sub, e.ExitCode)
	}
	return fmt.Sprintf("%s: exit %d: %s", sub, e.ExitCode, msg)
}

// hardening is prepended to every host-side git call. It disables the
// repository's hooks (the user's hooks would otherwise run on the agent's
// work: a pre-commit hook running tests, a post-merge hook running npm
// install) and anything that pages or prompts.
var hardening = []string{
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.pager=cat",
	"-c", "gc.auto=0",
	"-c", "maintenance.auto=false",
}

// gitRunner runs git with a fixed environment and turns failures into
// *GitError.
type gitRunner struct {
	env []string
}

// newGit builds a runner from environ. Variables that would point git at a
// different repository (set, for instance, when airlock runs from inside a
// git hook) are dropped; prompts, pagers, editors and translations are off.
func newGit(environ []string) gitRunner {
	drop := map[string]bool{
		"GIT_DIR": true, "GIT_WORK_TREE": true, "GIT_INDEX_FILE": true,
		"GIT_OBJECT_DIRECTORY": true, "GIT_ALTERNATE_OBJECT_DIRECTORIES": true,
		"GIT_COMMON_DIR": true, "GIT_NAMESPACE": true, "GIT_PREFIX": true,
		"GIT_CEILING_DIRECTORIES": true, "GIT_DISCOVERY_ACROSS_FILESYSTEM": true,
	}
	env := make([]string, 0, len(environ)+6)
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if drop[k] || k == "LC_ALL" || k == "LANG" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
		"GIT_PAGER=cat",
		"GIT_EDITOR=true",
		"GIT_MERGE_AUTOEDIT=no",
		"GIT_OPTIONAL_LOCKS=0",
	)
	return gitRunner{env: env}
}

func defaultGit() gitRunner { return newGit(os.Environ()) }

// run runs git in dir and returns its stdout.
func (g gitRunner) run(ctx context.Context, dir string, args ...string) (string, error) {
	var out bytes.Buffer
	err := g.stream(ctx, dir, &out, args...)
	return out.String(), err
}

// line runs git and returns the first line of its output, trimmed.
func (g gitRunner) line(ctx context.Context, dir string, args ...string) (string, error) {
	out, err := g.run(ctx, dir, args...)
	first, _, _ := strings.Cut(out, "\n")
	return strings.TrimSpace(first), err
}

// runStdin runs git with stdin as its input.
func (g gitRunner) runStdin(ctx context.Context, dir, stdin string, args ...string) error {
	return g.exec(ctx, dir, strings.NewReader(stdin), io.Discard, args...)
}

// stream runs git in dir with stdout going to w.
func (g gitRunner) stream(ctx context.Context, dir string, w io.Writer, args ...string) error {
	return g.exec(ctx, dir, nil, w, args...)
}

func (g gitRunner) exec(ctx context.Context, dir string, stdin io.Reader, w io.Writer, args ...string) error {
	full := append(append([]string{}, hardening...), args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Dir = dir
	cmd.Env = g.env
	cmd.Stdin = stdin
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return &GitError{Args: args, ExitCode: exit.ExitCode(), Stderr: stderr.String()}
	}
	return fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
}

// exitCode reports the exit code of a *GitError, or -1.
func exitCode(err error) int {
	var ge *GitError
	if errors.As(err, &ge) {
		return ge.ExitCode
	}
	return -1
}

// lines splits git output on newlines, dropping empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// nulFields splits -z output.
func nulFields(s string) []string {
	var out []string
	for _, f := range strings.Split(s, "\x00") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// GitDirs are repo's git directory and its common directory (they differ
// in a linked worktree), absolute: what no mount may give a sandbox.
func GitDirs(ctx context.Context, repo string) ([]string, error) {
	out, err := defaultGit().run(ctx, repo, "rev-parse", "--path-format=absolute", "--git-dir", "--git-common-dir")
	if err != nil {
		return nil, fmt.Errorf("find the git directory of %s: %w", repo, err)
	}
	return lines(out), nil
}
