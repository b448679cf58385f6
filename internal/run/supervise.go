package run

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

// StopReasonDisk is the StopReason of a run that outgrew its disk quota.
const StopReasonDisk = "disk"

// hostStopGrace is how long a run the host stops for its budget or quota
// gets between SIGTERM and SIGKILL. Short: the agent has already been cut
// off by the proxy, and whatever it does in the meantime is not wanted.
const hostStopGrace = 3 * time.Second

// superviseEvery is how often a supervisor checks the clock and the proxy's
// meter; the disk is walked less often when walking it is slow.
const superviseEvery = 500 * time.Millisecond

// maxRunFiles caps the files a run may have in its directories, so that an
// agent cannot exhaust the host's inodes (or make the quota walk slow)
// with millions of empty files.
const maxRunFiles = 2_000_000

// Supervise enforces, from outside the sandbox, what the host decides while
// the run's agent works: its deadline on the host clock, the proxy's budget
// verdict and its disk quota. Nothing in the sandbox can pause or deceive
// it; the proxy refuses traffic past the budget on its own, and this stops
// the container. It returns when the agent's container is no longer
// running or ctx ends. Any number of processes may supervise one run.
func (m *Manager) Supervise(ctx context.Context, r *store.Run) {
	nextDisk, nextSync := time.Time{}, time.Time{}
	cloud := cloudRefresher{m: m}
	// The warm pool is topped up by a detached `airlock prewarm`, not
	// here: a pair half made when this returns (the agent done) would be
	// removed again with ctx, and the pool left short.
	lastErr := ""
	for {
		cur, err := m.Store.Get(r.ID)
		if err != nil || cur.Status != store.StatusRunning || cur.StopRequested {
			return
		}
		// Cloud credentials expire while a run lasts: the host fetches
		// new ones and hands them to the proxy.
		if err := cloud.refresh(ctx, cur); err != nil && err.Error() != lastErr {
			lastErr = err.Error()
			m.progress("warning: %v", err)
		}
		st, err := m.Engine.Inspect(ctx, cur.Container)
		switch {
		case errors.Is(err, sandbox.ErrNotFound):
			m.removeCloudCredentials(r.ID)
			return
		case err != nil:
			// A busy engine fails a request now and then; supervision
			// goes on, or the budget would wait for the agent to give up.
			st.Status = sandbox.StatusRunning
		}
		switch st.Status {
		case sandbox.StatusRunning, sandbox.StatusPaused:
			// Paused still counts: the deadline runs on the host's clock.
		default:
			// Created, exited, dead or unknown: nothing to supervise,
			// and no proxy to hand credentials to.
			m.removeCloudCredentials(r.ID)
			return
		}
		if now := time.Now(); !now.Before(nextSync) {
			m.syncLive(ctx, cur)
			nextSync = time.Now().Add(liveSyncEvery)
		}
		if reason := m.overBudget(cur); reason != "" {
			m.hostStop(ctx, cur, StopReasonBudget, reason)
			return
		}
		if now := time.Now(); !now.Before(nextDisk) {
			reason, took := m.overQuota(cur)
			if reason != "" {
				m.hostStop(ctx, cur, StopReasonDisk, reason)
				return
			}
			// A big workspace is walked less often, so that the check
			// costs the host a small share of one core.
			nextDisk = now.Add(max(2*time.Second, 20*took))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(superviseEvery):
		}
	}
}

// overBudget says why a running run's budget is spent, from the host's
// clock and the proxy's meter, or "" while it is not.
func (m *Manager) overBudget(r *store.Run) string {
	if !r.Deadline.IsZero() && !m.now().Before(r.Deadline) {
		return timeoutReason(r)
	}
	return meterReason(r, m.meter(r), false)
}

func timeoutReason(r *store.Run) string {
	return fmt.Sprintf("budget: reached the timeout of %s", r.Timeout)
}

// meterReason says which budget the proxy's meter shows spent, or "".
// The turns budget counts as spent only when the agent has also ended
// (exited true): reaching exactly max turns is how a run that needs all of
// them finishes.
func meterReason(r *store.Run, mt egress.Meter, exited bool) string {
	switch {
	case r.MaxCostUSD > 0 && mt.CostUSD >= r.MaxCostUSD:
		return fmt.Sprintf("budget: reached the cost limit of $%s ($%s metered)", formatUSD(r.MaxCostUSD), formatUSD(mt.CostUSD))
	case r.MaxTurns > 0 && mt.ModelRequests > r.MaxTurns,
		r.MaxTurns > 0 && exited && mt.ModelRequests >= r.MaxTurns:
		return fmt.Sprintf("budget: reached max turns (%d)", r.MaxTurns)
	case mt.Exhausted != "":
		return "budget: " + oneLine(mt.Exhausted)
	}
	return ""
}

// overQuota measures the run's directories against its disk quota, and
// says why the run is over it, or "" if it is not; it also returns how
// long measuring took.
func (m *Manager) overQuota(r *store.Run) (string, time.Duration) {
	if r.DiskBytes <= 0 {
		return "", 0
	}
	start := time.Now()
	dir := m.Store.RunDir(r.ID)
	var dirs []string
	// egress/ is the proxy's, but what it holds (the audit log) grows with
	// what the agent sends, refused requests included.
	for _, d := range []string{"workspace", "home", "log", "egress"} {
		if d == "workspace" && r.Here {
			continue // the user's own project: not the run's to account for
		}
		dirs = append(dirs, filepath.Join(dir, d))
	}
	u := diskUsage(dirs, maxRunFiles)
	took := time.Since(start)
	switch {
	case u.Bytes > r.DiskBytes:
		return fmt.Sprintf("disk: the run's files reached %s, over its quota of %s ([sandbox] disk)",
			config.FormatSize(u.Bytes), config.FormatSize(r.DiskBytes)), took
	case u.Files >= maxRunFiles:
		return fmt.Sprintf("disk: the run made more than %d files", maxRunFiles), took
	}
	return "", took
}

// usage is what a directory tree takes on disk.
type usage struct {
	Bytes int64 // allocated blocks, so sparse files count for what they use
	Files int
}

// diskUsage adds up the trees under dirs without following symbolic links
// and counting a hard-linked file once; it stops counting files at
// maxFiles. Entries that vanish while it walks are skipped: the agent is
// still working.
func diskUsage(dirs []string, maxFiles int) usage {
	var u usage
	seen := map[[2]uint64]bool{}
	errStop := errors.New("stop")
	for _, root := range dirs {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			info, err := d.Info() // lstat: never follows a link
			if err != nil {
				return nil
			}
			u.Files++
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				if st.Nlink > 1 && !info.IsDir() {
					key := [2]uint64{uint64(st.Dev), st.Ino}
					if seen[key] {
						return nil
					}
					seen[key] = true
				}
				u.Bytes += st.Blocks * 512
			} else {
				u.Bytes += info.Size()
			}
			if u.Files >= maxFiles {
				return errStop
			}
			return nil
		})
		if errors.Is(err, errStop) {
			break
		}
	}
	return u
}

// hostStop records why the host stops a run, then stops its container.
// The record comes first, so whoever reconciles the run next knows the
// stop was the host's, not the agent's exit.
func (m *Manager) hostStop(ctx context.Context, r *store.Run, reason, text string) {
	if _, err := m.Store.Update(r.ID, func(r *store.Run) error {
		if r.Status == store.StatusRunning && !r.StopRequested {
			r.StopRequested = true
			r.StopReason = reason
			r.Error = text
		}
		return nil
	}); err != nil {
		return
	}
	m.progress("Stopping %s: %s", r.ID, text)
	m.Engine.Stop(context.WithoutCancel(ctx), r.Container, hostStopGrace)
}

// formatUSD shows a cost with four significant digits below a cent.
func formatUSD(v float64) string {
	if v > 0 && v < 0.01 {
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// oneLine is s as safe text on one line (the project's one sanitiser), at
// most 200 bytes of it.
func oneLine(s string) string {
	s = untrusted.Line(s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "")
	}
	return strings.TrimSpace(s)
}
