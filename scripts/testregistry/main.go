// Command testregistry is the test cluster's image registry: the OCI
// distribution API of go-containerregistry's registry package, plain HTTP
// on a loopback address, blobs on disk (images are hundreds of MB),
// manifests in memory. scripts/k8s-cluster.sh starts it with the cluster:
//
//	testregistry -addr 127.0.0.1:23500 -dir /var/lib/airlock-k8s/registry
//
// Its manifests go with the process, so the blobs an earlier one left are
// unreachable: it starts with an empty directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "testregistry:", err)
		os.Exit(1)
	}
}

func run(args []string, logTo io.Writer) error {
	fs := flag.NewFlagSet("testregistry", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:23500", "loopback address to listen on")
	dir := fs.String("dir", "", "directory for the blobs (emptied at start)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	// Plain HTTP and no authentication: loopback only.
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", *addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: not a loopback address", *addr)
	}
	if err := os.RemoveAll(*dir); err != nil {
		return fmt.Errorf("empty %s: %w", *dir, err)
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: registry.New(
			registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)),
			registry.Logger(log.New(logTo, "", log.LstdFlags)),
		),
		ReadHeaderTimeout: 30 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	log.New(logTo, "", log.LstdFlags).Printf("serving on %s, blobs in %s", ln.Addr(), *dir)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
