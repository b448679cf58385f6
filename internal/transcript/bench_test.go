package transcript

import (
	"bytes"
	"io"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// BenchmarkRender renders a generated 16 MiB transcript as `airlock logs`
// does by default; the profile to start from when making logs faster.
func BenchmarkRender(b *testing.B) {
	var in bytes.Buffer
	if _, err := testkit.WriteTranscript(&in, 16<<20); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(in.Len()))
	for b.Loop() {
		rend := &Renderer{W: io.Discard, Verbosity: 1}
		sc := NewScanner(bytes.NewReader(in.Bytes()))
		for sc.Scan() {
			rend.Render(sc.Event())
		}
	}
}
