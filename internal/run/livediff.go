package run

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// sandboxDiff is git diff in the sandbox on the agent's copy, with the same
// reach as sandboxGit: parseable output, no protection.
var sandboxDiff = []string{
	"git",
	"-c", "core.fsmonitor=false",
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.pager=cat",
	"-c", "core.quotePath=true",
	"diff", "--no-ext-diff", "--no-textconv", "--no-color", "--no-relative",
}

// LiveDiff is a running run's changes so far against its base, committed
// or not (tracked files), from git run inside its sandbox as the agent:
// host git never runs in the copy. The stat and the patch are each capped
// (statMax, patchMax bytes); a patch cut off at its cap is returned as far
// as it goes. A run that is not running is ErrNotRunning (wrapped).
func (m *Manager) LiveDiff(ctx context.Context, r *store.Run, statMax, patchMax int) (stat, patch string, err error) {
	if r.BaseCommit == "" {
		return "", "", fmt.Errorf("run %s has no base commit to diff against", r.ID)
	}
	s, err := m.Session(ctx, r)
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, commitsTimeout)
	defer cancel()
	diff := func(max int, extra ...string) (string, error) {
		cmd := slices.Concat(sandboxDiff, extra, []string{"--end-of-options", r.BaseCommit, "--"})
		data, _, err := sandboxOutput(ctx, s, cmd, max)
		if err != nil {
			return "", fmt.Errorf("diff run %s in its sandbox: %w", r.ID, err)
		}
		return string(data), nil
	}
	if stat, err = diff(statMax, "--stat"); err != nil {
		return "", "", err
	}
	if patch, err = diff(patchMax); err != nil {
		return "", "", err
	}
	return stat, patch, nil
}

// sandboxOutput runs cmd in the sandbox as the agent and returns its
// standard output, at most max bytes: past that git is stopped and over is
// set, and what was read is returned without an error.
func sandboxOutput(ctx context.Context, s *Session, cmd []string, max int) (out []byte, over bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdout := &cappedBuffer{max: max, full: cancel}
	stderr := &cappedBuffer{max: 4 << 10}
	code, err := s.Exec(ctx, sandbox.ExecSpec{
		Cmd:    cmd,
		Env:    []string{"GIT_PAGER=cat", "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C"},
		Stdout: stdout, Stderr: stderr,
	})
	data, over := stdout.result()
	errText, _ := stderr.result()
	switch {
	case over:
		// Stopped on purpose: what was read is kept.
	case err != nil:
		return nil, false, err
	case code != 0:
		return nil, false, fmt.Errorf("%s exited with status %d: %s", cmd[0], code, untrusted.Line(strings.TrimSpace(string(errText))))
	}
	return data, over, nil
}
