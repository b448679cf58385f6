package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// newConnectCmd is ssh's ProxyCommand inside the sandbox: it asks the
// egress proxy (through the relay's loopback port) for a tunnel to
// HOST:PORT and joins it to standard input and output. The proxy decides;
// this only speaks CONNECT.
func newConnectCmd(f *Factory) *cobra.Command {
	var proxy string
	cmd := &cobra.Command{
		Use:    "connect HOST PORT",
		Short:  "Open a tunnel through the egress proxy on standard input and output (ssh's ProxyCommand, inside the sandbox)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return connectRun(cmd.Context(), f, proxy, args[0], args[1])
		},
	}
	cmd.Flags().StringVar(&proxy, "proxy", sandbox.AgentProxyAddr, "the egress proxy's address")
	return cmd
}

func connectRun(ctx context.Context, f *Factory, proxy, host, port string) error {
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return flagErrorf("port %q is not a number", port)
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n/@") {
		return flagErrorf("host %q is not a host name or address", host)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return fmt.Errorf("connect: the egress proxy at %s: %w", proxy, err)
	}
	defer conn.Close()
	target := net.JoinHostPort(host, port)
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("connect: the egress proxy's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		msg := strings.TrimSpace(string(body))
		if msg == "" {
			msg = resp.Status
		}
		return &ExitError{Code: ExitFailure, Message: "connect " + target + ": " + msg}
	}
	// The tunnel is open: what the proxy sent after its answer is the
	// server's already.
	// It ends when the server's side does; the client's end only
	// half-closes it.
	go func() {
		io.Copy(conn, f.IO.In)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	io.Copy(f.IO.Out, br)
	return nil
}
