package sandbox

import (
	"os"

	"golang.org/x/sys/unix"
)

// reap is the loop of airlock's own init (Incus' and Kubernetes'): it
// reaps every child until the command (pid) ends, handing each signal the
// init gets to handle in between, and returns the command's status the
// way a shell reports it (128+signal when killed).
func reap(pid int, sigs <-chan os.Signal, handle func(os.Signal)) int {
	for {
		var ws unix.WaitStatus
		for {
			p, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err != nil || p <= 0 {
				break
			}
			if p == pid {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
		handle(<-sigs)
	}
}
