package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// systemBundles are where images keep their trusted CAs (Debian and
// Alpine, Fedora, others); the first that exists is the image's.
var systemBundles = []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"}

// writeCABundle writes the image's trusted CAs plus the run's
// interception CA to sandbox.CABundlePath, before the agent starts: the
// sandbox's SSL_CERT_FILE and friends point there, and each replaces its
// tool's trust store rather than adding to it. The bundle is the
// sandbox's own business (the agent could write any), so it is made
// inside, from the image's actual store.
func writeCABundle() error {
	runCA, err := os.ReadFile(sandbox.RunCAPath)
	if err != nil {
		return fmt.Errorf("relay: the run's CA: %w", err)
	}
	var b bytes.Buffer
	for _, path := range systemBundles {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		_, err = io.Copy(&b, io.LimitReader(f, 16<<20))
		f.Close()
		if err == nil {
			break
		}
		b.Reset()
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	b.Write(runCA)
	tmp := sandbox.CABundlePath + ".tmp"
	os.Remove(tmp)
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("relay: write the CA bundle: %w", err)
	}
	if err := os.Rename(tmp, sandbox.CABundlePath); err != nil {
		return fmt.Errorf("relay: write the CA bundle: %w", err)
	}
	return nil
}
