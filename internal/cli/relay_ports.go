package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// relayPorts serves the agent's loopback TCP ports to the host (run -p):
// for each --forward PORT=SOCKET, the relay listens on SOCKET, in the
// socket directory the host can reach, and carries each connection to
// 127.0.0.1:PORT here. The direction is the host's: the sandbox still
// dials nothing outside itself. stop closes them all.
func relayPorts(ctx context.Context, forwards []string) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	for _, fw := range forwards {
		port, sock, ok := strings.Cut(fw, "=")
		n, perr := strconv.Atoi(port)
		if !ok || perr != nil || n < 1 || n > 65535 || filepath.Dir(sock) != sandbox.SocketDir {
			cancel()
			return nil, flagErrorf("--forward %q: want PORT=%s/NAME", fw, sandbox.SocketDir)
		}
		// A socket left by the container's previous start.
		os.Remove(sock)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("relay: forward port %d: %w", n, err)
		}
		addr := net.JoinHostPort("127.0.0.1", port)
		go egress.ForwardPort(ctx, ln, func() (net.Conn, error) { return net.Dial("tcp", addr) })
	}
	return cancel, nil
}
