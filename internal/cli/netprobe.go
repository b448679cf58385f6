package cli

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"
)

// newNetprobeCmd is doctor's helper inside a cluster's probe pods
// (sandbox.Kubernetes.ProbeNetworkPolicy): one pod listens, others try to
// connect, and whether they may shows whether the cluster enforces the
// network policies a sandbox relies on.
func newNetprobeCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "netprobe",
		Short:  "Listen on, or try to connect to, a TCP address (inside a probe pod)",
		Hidden: true,
	}
	var within time.Duration
	connect := &cobra.Command{
		Use:   "connect HOST:PORT",
		Short: "Exit 0 once a TCP connection to HOST:PORT succeeds, 1 if none does in time",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), within)
			defer cancel()
			var d net.Dialer
			for {
				c, err := d.DialContext(ctx, "tcp", args[0])
				if err == nil {
					c.Close()
					fmt.Fprintln(f.IO.Out, "connected")
					return nil
				}
				select {
				case <-ctx.Done():
					fmt.Fprintf(f.IO.Out, "not connected: %v\n", err)
					return &ExitError{Code: 1}
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	connect.Flags().DurationVar(&within, "within", 10*time.Second, "how long to keep trying")
	listen := &cobra.Command{
		Use:   "listen ADDR",
		Short: "Accept TCP connections on ADDR and close them, until stopped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ln, err := net.Listen("tcp", args[0])
			if err != nil {
				return err
			}
			defer ln.Close()
			fmt.Fprintln(f.IO.Out, "listening on", ln.Addr())
			for {
				c, err := ln.Accept()
				if err != nil {
					return err
				}
				c.Close()
			}
		},
	}
	cmd.AddCommand(connect, listen)
	return cmd
}
