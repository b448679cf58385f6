package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Docker in the sandbox, on Incus ([engine.incus] nesting = true).
//
// The agent's instance gets security.nesting, and its init, before it drops
// to the agent's user, starts the image's container engine as the
// instance's root: dockerd (Debian's docker.io or Docker's own packages),
// with its socket given to the agent's group, its data under /var/lib/docker
// on the instance's own root disk, and its HTTP(S) going to the sandbox's
// egress proxy at AgentProxyAddr (the instance has no NIC, so nothing else
// leaves it). With that socket the agent is root in its instance; the
// instance stays unprivileged on the host (its own id range, no NIC), and
// its mounts are not shifted (raw.idmap maps only the agent's ids), so that
// root owns nothing on the host.

// incusDockerSocket is where dockerd listens in the instance, Docker's
// default, so that the docker CLI needs no settings.
const incusDockerSocket = "/var/run/docker.sock"

// incusEngineLog keeps dockerd's own output in the instance (not in the
// command's output, which is the agent's).
const incusEngineLog = "/var/log/airlock-dockerd.log"

// incusEngineWait bounds how long the init waits for dockerd's socket
// before it starts the agent's command anyway.
const incusEngineWait = 30 * time.Second

// startIncusEngine starts dockerd when the image has one and waits for its
// socket. A missing dockerd is no error (the image has no engine); one that
// does not come up is reported in the command's output, and the command
// runs anyway.
func startIncusEngine(spec incusInitSpec, out io.Writer) {
	dockerd, ok := lookPathIn("dockerd", spec.Env)
	if !ok {
		return
	}
	// What an earlier start of a persistent instance left: dockerd refuses
	// to start over its pid file.
	for _, p := range []string{"/var/run/docker.pid", incusDockerSocket, "/var/run/docker"} {
		os.RemoveAll(p)
	}
	log, err := os.OpenFile(incusEngineLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		fmt.Fprintf(out, "airlock init: dockerd's log: %v\n", err)
		return
	}
	defer log.Close()
	proxy := "http://" + AgentProxyAddr
	cmd := exec.Command(dockerd, "--group", strconv.FormatUint(uint64(spec.GID), 10), "--host", "unix://"+incusDockerSocket)
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HTTP_PROXY=" + proxy, "HTTPS_PROXY=" + proxy, "http_proxy=" + proxy, "https_proxy=" + proxy,
		"NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1",
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(out, "airlock init: start dockerd: %v\n", err)
		return
	}
	// The init reaps it with every other child.
	deadline := time.Now().Add(incusEngineWait)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(incusDockerSocket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		var ws syscall.WaitStatus
		if p, _ := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WNOHANG, nil); p == cmd.Process.Pid {
			fmt.Fprintf(out, "airlock init: dockerd ended (%v) before it listened; its log is %s in the sandbox\n", ws, incusEngineLog)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(out, "airlock init: dockerd did not listen on %s within %s; its log is %s in the sandbox\n",
		incusDockerSocket, incusEngineWait, incusEngineLog)
}

// checkIncusRawIdmap checks that incusd (root) may map the host's uid and
// gid into an instance as themselves: newuidmap allows only the ranges
// /etc/subuid and /etc/subgid give root.
func checkIncusRawIdmap(uid, gid int, subuid, subgid string) error {
	if uid <= 0 || gid <= 0 {
		return fmt.Errorf("nesting needs the agent's user as a non-root uid:gid, not %d:%d", uid, gid)
	}
	for _, c := range []struct {
		file string
		id   int
	}{{subuid, uid}, {subgid, gid}} {
		ok, err := subidAllows(c.file, c.id)
		if err != nil {
			return fmt.Errorf("nesting: %w", err)
		}
		if !ok {
			return fmt.Errorf("nesting maps the agent's ids %d:%d into its instance as themselves (so that the instance's root owns nothing on the host), which Incus may do only when /etc/subuid and /etc/subgid give root those ids; %s does not: add `root:%d:1` to %s and `root:%d:1` to %s, or set engine.incus.nesting = false",
				uid, gid, c.file, uid, subuid, gid, subgid)
		}
	}
	return nil
}

// subidAllows reports whether a subordinate id file gives root the id.
func subidAllows(path string, id int) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(fields) != 3 || (fields[0] != "root" && fields[0] != "0") {
			continue
		}
		start, err1 := strconv.Atoi(fields[1])
		n, err2 := strconv.Atoi(fields[2])
		if err1 == nil && err2 == nil && id >= start && id < start+n {
			return true, nil
		}
	}
	return false, sc.Err()
}
