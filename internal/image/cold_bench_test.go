package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// BenchmarkAgentImageCold builds the default agent image from scratch, as a
// new user's first `make demo` does: the base is there (it is a stage of its
// own), the packages come from the machine's mirror and npm's registry
// (warm on a machine that has fetched them before), and no layer of an
// earlier build is reused: an extra CA file unique to this build changes
// the layer every later one builds on. Target: under 60 s.
func BenchmarkAgentImageCold(b *testing.B) {
	eng := testkit.Docker(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	ca, err := os.ReadFile(HostCABundle)
	if err != nil {
		b.Fatalf("read host CA bundle: %v", err)
	}
	spec := Spec{Base: BootstrapBase, CACerts: [][]byte{ca}}.withDefaults()
	if spec.Mirror, err = DetectMirror(aptDir); err != nil {
		b.Fatal(err)
	}
	if _, err := Bootstrap(ctx, eng, spec.Mirror, nil); err != nil {
		b.Fatal(err)
	}
	const tag = "airlock-bench-agent:cold"
	var total time.Duration
	for i := 0; i < b.N; i++ {
		s := spec
		s.CACerts = append(s.CACerts, fmt.Appendf(nil, "# airlock cold build %d\n", time.Now().UnixNano()))
		var out bytes.Buffer
		start := time.Now()
		err := eng.BuildImage(ctx, sandbox.BuildRequest{Files: contextFiles(s), Tags: []string{tag}, Progress: &out})
		total += time.Since(start)
		if err != nil {
			b.Fatalf("build: %v\n%s", err, out.String())
		}
		exec.Command("docker", "rmi", "-f", tag).Run()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "agent-image-s")
	b.ReportMetric(0, "ns/op")
}
