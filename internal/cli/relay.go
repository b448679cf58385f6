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
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// newRelayCmd is the sandbox side of the egress topology: it runs inside the
// agent's container (which has no network), listens on loopback ports and
// carries each connection to the proxy's Unix socket (or, where the proxy is
// another pod, to its channel over TCP), then runs the agent's command and
// exits with its status.
func newRelayCmd(f *Factory) *cobra.Command {
	var listens []string
	var bud relayBudget
	var bundle relayBundle
	var caBundle bool
	var forwards []string
	cmd := &cobra.Command{
		Use:    "relay --listen ADDR=SOCKET|ADDR=tcp:HOST:PORT... -- COMMAND...",
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
	cmd.Flags().StringArrayVar(&listens, "listen", nil, "ADDR=SOCKET, or ADDR=tcp:HOST:PORT (the proxy's channel over TCP, keyed by $"+egress.ChannelKeyEnv+"), to relay (repeatable)")
	cmd.Flags().StringArrayVar(&forwards, "forward", nil, "PORT=SOCKET: serve loopback TCP port PORT to the host on SOCKET (repeatable)")
	bud.addFlags(cmd.Flags())
	bundle.addFlags(cmd.Flags())
	return cmd
}

// relayListen is one --listen: the loopback address to serve and where it
// goes, the proxy's Unix socket or its channel over TCP.
type relayListen struct {
	addr    string
	socket  string // ADDR=SOCKET
	channel string // ADDR=tcp:HOST:PORT
}

// parseRelayListens reads every --listen before anything listens, so a bad
// one changes nothing.
func parseRelayListens(listens []string) ([]relayListen, error) {
	var out []relayListen
	for _, l := range listens {
		addr, to, ok := strings.Cut(l, "=")
		if !ok || addr == "" || to == "" {
			return nil, flagErrorf("--listen %q: want ADDR=SOCKET or ADDR=tcp:HOST:PORT", l)
		}
		rl := relayListen{addr: addr, socket: to}
		if hostPort, ok := strings.CutPrefix(to, "tcp:"); ok {
			host, port, err := net.SplitHostPort(hostPort)
			if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				return nil, flagErrorf("--listen %q: want ADDR=tcp:HOST:PORT with a host and a port 1-65535", l)
			}
			rl = relayListen{addr: addr, channel: hostPort}
		}
		out = append(out, rl)
	}
	return out, nil
}

func relayRun(ctx context.Context, f *Factory, listens []string, bud *relayBudget, bundle *relayBundle, command []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rls, err := parseRelayListens(listens)
	if err != nil {
		return err
	}
	var key egress.ChannelKey
	if slices.ContainsFunc(rls, func(rl relayListen) bool { return rl.channel != "" }) {
		if key, err = egress.TakeChannelKey(); err != nil {
			return fmt.Errorf("relay: --listen ...=tcp:HOST:PORT: %w", err)
		}
		// The agent's command runs as this process's user: without this
		// it could read the key from /proc/PID/environ or our memory, and
		// hand it to another pod. The agent's own process is dumpable
		// again (execve resets the flag).
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			return fmt.Errorf("relay: keeping the channel key from the agent: %w", err)
		}
	}
	for _, rl := range rls {
		ln, err := net.Listen("tcp", rl.addr)
		if err != nil {
			return fmt.Errorf("relay: %w", err)
		}
		if rl.channel != "" {
			go egress.RelayChannel(ctx, ln, rl.channel, key)
		} else {
			go egress.Relay(ctx, ln, rl.socket)
		}
	}
	// The lifeline tells the proxy when the agent has exited, so that it
	// winds down while this container does. Without one the host stops
	// the proxy afterwards, as it always may.
	lifeline := make(chan io.Closer, 1)
	if len(rls) > 0 {
		go func() {
			var c io.Closer
			var err error
			if rl := rls[0]; rl.channel != "" {
				c, err = egress.ChannelLifeline(ctx, rl.channel, key)
			} else {
				c, err = egress.Lifeline(rl.socket)
			}
			if err == nil {
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
	err = child.Wait()
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
