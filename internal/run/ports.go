package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// Port is a TCP port of the sandbox (a dev server the agent runs on its
// 127.0.0.1:Sandbox) forwarded to the host's 127.0.0.1:Host (run -p). The
// sandbox still has no network: the relay serves the port on a socket in
// the socket directory, and the host side (the attached run, or its
// watcher) listens on loopback and connects to that socket; on Kubernetes
// the host side connects through the API server's portforward instead.
type Port struct {
	Host, Sandbox int
}

// portLoopback is the only host address a forwarded port listens on.
const portLoopback = "127.0.0.1"

// String is the port as a run's record shows it.
func (p Port) String() string {
	return portLoopback + ":" + strconv.Itoa(p.Host) + "->" + strconv.Itoa(p.Sandbox)
}

// ParsePort reads -p's [[127.0.0.1:]HOSTPORT:]PORT.
func ParsePort(spec string) (Port, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("-p %q: %s", spec, fmt.Sprintf(format, args...))
	}
	parts := strings.Split(spec, ":")
	addr := ""
	switch len(parts) {
	case 1:
		parts = []string{parts[0], parts[0]}
	case 2:
	case 3:
		addr, parts = parts[0], parts[1:]
	default:
		return Port{}, bad("write it as PORT, HOSTPORT:PORT or 127.0.0.1:HOSTPORT:PORT")
	}
	if addr != "" && addr != portLoopback && addr != "localhost" {
		return Port{}, bad("a forwarded port listens on the host's loopback (127.0.0.1) only: what reaches it reaches the agent's server, and through it the sandbox, so it is not offered to other machines (%q)", addr)
	}
	var nums [2]int
	for i, s := range parts {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return Port{}, bad("%q is not a port number (1-65535)", s)
		}
		nums[i] = n
	}
	p := Port{Host: nums[0], Sandbox: nums[1]}
	for _, reserved := range []string{sandbox.AgentProxyAddr, sandbox.AgentAPIAddr} {
		if _, port, _ := net.SplitHostPort(reserved); port == strconv.Itoa(p.Sandbox) {
			return Port{}, bad("port %d in the sandbox is airlock's own relay to the egress proxy, which is never offered to the host", p.Sandbox)
		}
	}
	return p, nil
}

// portStrings are ports as a run's record shows them.
func portStrings(ports []Port) []string {
	var out []string
	for _, p := range ports {
		out = append(out, p.String())
	}
	return out
}

// portFlags tell the relay which ports to serve, on which sockets.
func portFlags(ports []Port) []string {
	var out []string
	for _, p := range ports {
		out = append(out, "--forward", strconv.Itoa(p.Sandbox)+"="+sandbox.SocketDir+"/"+sandbox.PortSocketName(p.Sandbox))
	}
	return out
}

// checkPorts refuses, before anything is made, two forwards of one host
// port or of one sandbox port, and a host port something already listens
// on.
func checkPorts(ports []Port) error {
	hosts, inside := map[int]bool{}, map[int]bool{}
	for _, p := range ports {
		if hosts[p.Host] || inside[p.Sandbox] {
			return fmt.Errorf("-p %s: that port is forwarded twice", p)
		}
		hosts[p.Host], inside[p.Sandbox] = true, true
		ln, err := net.Listen("tcp", net.JoinHostPort(portLoopback, strconv.Itoa(p.Host)))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("-p %s: port %d of the host's loopback is in use; choose another with -p HOSTPORT:%d", p, p.Host, p.Sandbox)
			}
			return fmt.Errorf("-p %s: %w", p, err)
		}
		ln.Close()
	}
	return nil
}

// ServePorts forwards the run's ports from the host's loopback into its
// sandbox until ctx ends (the caller ends it when the run has ended): to
// the relay's sockets, or, on an engine that dials a container's ports
// itself (Kubernetes: through the API server), to the agent's loopback. A
// host port it cannot listen on is reported to w and skipped.
func (m *Manager) ServePorts(ctx context.Context, r *store.Run, w io.Writer) {
	dir := sandbox.HostSocketDir(m.Store.RunDir(r.ID))
	for _, s := range r.Ports {
		p, err := parseRecordedPort(s)
		if err != nil {
			fmt.Fprintf(w, "airlock: run %s: %v\n", r.ID, err)
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(portLoopback, strconv.Itoa(p.Host)))
		if err != nil {
			fmt.Fprintf(w, "airlock: run %s: cannot forward %s: %v\n", r.ID, p, err)
			continue
		}
		dial := func() (net.Conn, error) { return egress.DialSocketNoFollow(dir, sandbox.PortSocketName(p.Sandbox)) }
		if pd := m.Caps.Ports; pd != nil {
			dial = func() (net.Conn, error) { return pd.DialPort(ctx, r.Container, p.Sandbox) }
		}
		go egress.ForwardPort(ctx, ln, dial)
	}
}

// parseRecordedPort reads Port.String back.
func parseRecordedPort(s string) (Port, error) {
	host, inside, ok := strings.Cut(strings.TrimPrefix(s, portLoopback+":"), "->")
	h, err1 := strconv.Atoi(host)
	i, err2 := strconv.Atoi(inside)
	if !ok || err1 != nil || err2 != nil {
		return Port{}, fmt.Errorf("recorded port %q is not HOST->PORT", s)
	}
	return Port{Host: h, Sandbox: i}, nil
}
