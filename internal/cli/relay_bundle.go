package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/airlock-dev/airlock/internal/workspace"
)

// relayBundle is the harvest made in the agent's own container once the
// agent has exited, instead of in a container of its own: the same script,
// on the same copy, as contained as the agent. The host verifies what it
// writes exactly as it verifies the harvest container's output, and falls
// back to that container when it is missing or unusable (a killed run, or
// an agent that tampered with it).
type relayBundle struct {
	branch  string
	exclude []string
	timeout time.Duration
}

func (b *relayBundle) addFlags(fl *pflag.FlagSet) {
	fl.StringVar(&b.branch, "bundle-branch", "", "after the command, bundle this branch and uncommitted changes of /workspace into /airlock/out")
	fl.StringArrayVar(&b.exclude, "bundle-exclude", nil, "commit the bundle leaves out the history of (repeatable)")
	fl.DurationVar(&b.timeout, "bundle-timeout", 2*time.Minute, "how long bundling may take")
}

// run bundles the work once nothing the agent started is left to change it:
// every other process this user can signal is killed first, so nothing
// rewrites the copy or the bundle while it is made. If they cannot all be
// killed, there is no bundle and the host's harvest container takes over.
func (b *relayBundle) run(ctx context.Context) {
	if b.branch == "" || !killOthers() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	sh := exec.CommandContext(ctx, "/bin/sh", "-c", workspace.HarvestScript(b.branch, b.exclude...))
	sh.Dir = "/workspace"
	sh.Env = []string{"HOME=/tmp", "PATH=" + os.Getenv("PATH")}
	// Timed out: the whole group goes, git included; the report, written
	// last, is then missing.
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	sh.Cancel = func() error { return syscall.Kill(-sh.Process.Pid, syscall.SIGKILL) }
	sh.Run()
}

// killOthers kills every process in the container but this one and its
// ancestors (the container's init, and the image's own init above the
// relay), reaping any that were this one's, until none is left; it reports
// whether that happened. A process it may not kill, or one that keeps
// forking for a second, means no.
func killOthers() bool {
	keep := map[int]bool{}
	for pid := os.Getpid(); pid > 0 && !keep[pid]; {
		keep[pid] = true
		_, ppid, ok := procStat(pid)
		if !ok {
			break
		}
		pid = ppid
	}
	for range 200 {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return false
		}
		live := 0
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || keep[pid] {
				continue
			}
			state, _, ok := procStat(pid)
			if !ok || state == 'Z' || state == 'X' {
				continue // gone, or dead and waiting to be reaped
			}
			live++
			if err := syscall.Kill(pid, syscall.SIGKILL); errors.Is(err, syscall.EPERM) {
				return false
			}
		}
		for {
			var ws syscall.WaitStatus
			if pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 {
				break
			}
		}
		if live == 0 {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

// procStat reads a process's state and parent from /proc/PID/stat; the
// command name before them is in parentheses and may hold anything.
func procStat(pid int) (state byte, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err == nil
}
