package sandbox

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"

	"golang.org/x/sys/unix"
)

// A pod's containers each have their own process namespace (a shared one
// would let the agent see, signal and trace the keeper that copies its
// files out, and the relay's clean-up would kill it), so nothing but the
// command would be PID 1 of the agent's container: no init to reap orphans,
// and a PID 1 that ignores SIGTERM and cannot be killed from inside. So the
// agent's container runs this binary, copied in with the mounts, as its
// init: `airlock __k8s-init -- COMMAND...` (KubernetesInitCommand), as the
// pod's user. It runs the command, forwards stop signals to it, reaps
// orphans, and ends with the command's status, taking whatever the command
// left with it; Stop reaches it with `airlock __k8s-init kill TERM|KILL`
// through exec.
const (
	// KubernetesInitCommand is the hidden subcommand of the airlock binary
	// that is PID 1 of a pod's agent container.
	KubernetesInitCommand = "__k8s-init"

	// kubeKillSignal asks the init to kill everything at once (Stop's
	// timeout passed). The command may send it too: it only ends itself.
	kubeKillSignal = unix.SIGUSR1
)

// KubernetesInit is a pod's init (KubernetesInitCommand), or, with "kill",
// the signal Stop sends it.
func KubernetesInit(args []string, stderr io.Writer) int {
	if len(args) == 2 && args[0] == "kill" {
		sig := unix.SIGTERM
		if args[1] == "KILL" {
			sig = kubeKillSignal
		}
		if err := unix.Kill(1, sig); err != nil {
			fmt.Fprintf(stderr, "airlock init: kill: %v\n", err)
			return 1
		}
		return 0
	}
	if len(args) < 2 || args[0] != "--" {
		fmt.Fprintln(stderr, "airlock init: usage: "+KubernetesInitCommand+" -- COMMAND...")
		return 2
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs)
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "airlock init: start %s: %v\n", args[1], err)
		return 127
	}
	code := reapKube(cmd.Process.Pid, sigs)
	// What the command left behind goes with it, as when a container's
	// PID 1 ends.
	unix.Kill(-1, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(-1, nil, 0, nil); err != nil {
			break
		}
	}
	return code
}

// reapKube is reap forwarding the stop signals __k8s-init kill sends;
// its kill signal ends every process.
func reapKube(pid int, sigs <-chan os.Signal) int {
	return reap(pid, sigs, func(s os.Signal) {
		switch s := s.(unix.Signal); s {
		case unix.SIGCHLD, unix.SIGURG, unix.SIGWINCH, unix.SIGPIPE:
			// SIGURG is the Go runtime's own preemption signal.
		case kubeKillSignal:
			unix.Kill(-1, unix.SIGKILL)
		default:
			unix.Kill(pid, s)
		}
	})
}
