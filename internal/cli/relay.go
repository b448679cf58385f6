package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// newRelayCmd is the sandbox side of the egress topology: it runs inside the
// agent's container (which has no network), listens on loopback ports and
// carries each connection to the proxy's Unix socket, then runs the agent's
// command and exits with its status.
func newRelayCmd(f *Factory) *cobra.Command {
	var listens []string
	var bud relayBudget
	var bundle relayBundle
	var caBundle bool
	var forwards []string
	cmd := &cobra.Command{
		Use:    "relay --listen ADDR=SOCKET... -- COMMAND...",
		Short:  "Relay loopback ports to the egress proxy, then run a command (inside the sandbox)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if caBundle {
				if err := writeCABundle(); err != nil {
					return err
				}
			}
			stopPorts, err := relayPorts(cmd.Context(), forwards)
			if err != nil {
				return err
			}
			defer stopPorts()
			return relayRun(cmd.Context(), f, listens, &bud, &bundle, args)
		},
	}
	cmd.Flags().BoolVar(&caBundle, "ca-bundle", false, "first write the image's CAs plus the run's interception CA to "+sandbox.CABundlePath)
	cmd.Flags().StringArrayVar(&listens, "listen", nil, "ADDR=SOCKET to relay (repeatable)")
	cmd.Flags().StringArrayVar(&forwards, "forward", nil, "PORT=SOCKET: serve loopback TCP port PORT to the host on SOCKET (repeatable)")
	bud.addFlags(cmd.Flags())
	bundle.addFlags(cmd.Flags())
	return cmd
}

func relayRun(ctx context.Context, f *Factory, listens []string, bud *relayBudget, bundle *relayBundle, command []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, l := range listens {
		addr, sock, ok := strings.Cut(l, "=")
		if !ok {
			return flagErrorf("--listen %q: want ADDR=SOCKET", l)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		go egress.Relay(ctx, ln, sock)
	}
	// The lifeline tells the proxy when the agent has exited, so that it
	// winds down while this container does. Without one the host stops
	// the proxy afterwards, as it always may.
	lifeline := make(chan io.Closer, 1)
	if len(listens) > 0 {
		_, sock, _ := strings.Cut(listens[0], "=")
		go func() {
			if c, err := egress.Lifeline(sock); err == nil {
				lifeline <- c
			}
		}()
	}
	child := exec.Command(command[0], command[1:]...)
	child.Stdin, child.Stdout, child.Stderr = f.IO.In, f.IO.Out, f.IO.ErrOut
	if err := child.Start(); err != nil {
		return fmt.Errorf("relay: start %s: %w", command[0], err)
	}
	// Pass stop signals on, so the agent shuts down as if it had them.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			child.Process.Signal(s)
		}
	}()
	exited, childDone := context.WithCancel(ctx)
	go bud.enforce(exited, child, relayErrorf(f))
	err := child.Wait()
	select {
	case c := <-lifeline:
		c.Close()
	default:
	}
	childDone()
	signal.Stop(sigs)
	bundle.run(ctx)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code := exitErr.ExitCode()
		if code < 0 {
			code = 128 + int(exitErr.Sys().(syscall.WaitStatus).Signal())
		}
		return &ExitError{Code: code}
	}
	return err
}
