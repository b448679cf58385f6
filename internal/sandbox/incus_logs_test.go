package sandbox

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// Logs reads the output again when a read fails part way; what reaches
// the writer is the output once, in order, however the reads were cut.
func TestResumeWriter(t *testing.T) {
	const output = "line one\nline two\nline three\n"
	tests := []struct {
		name  string
		reads []int // bytes each failed read delivered (in chunks of 4) before the whole read
	}{
		{"whole at once", nil},
		{"failed before any byte", []int{0}},
		{"failed part way", []int{10}},
		{"failed further each time", []int{3, 17, 25}},
		{"a later read failed earlier", []int{17, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got strings.Builder
			r := &resumeWriter{w: &got}
			for _, n := range append(tt.reads, len(output)) {
				r.seen = 0
				for off := 0; off < n; off += 4 {
					chunk := output[off:min(off+4, n)]
					if m, err := r.Write([]byte(chunk)); err != nil || m != len(chunk) {
						t.Fatalf("Write(%q) = %d, %v", chunk, m, err)
					}
				}
			}
			if got.String() != output {
				t.Errorf("the writer got %q, want the output once", got.String())
			}
		})
	}
}

type failingWriter struct{ left int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.left {
		n := f.left
		f.left = 0
		return n, errors.New("disk full")
	}
	f.left -= len(p)
	return len(p), nil
}

// The writer's own failure is reported, not taken for a failed read.
func TestResumeWriterFails(t *testing.T) {
	r := &resumeWriter{w: &failingWriter{left: 5}}
	if _, err := io.Copy(r, strings.NewReader("0123456789")); err == nil || r.err == nil {
		t.Fatalf("copy into a writer that fails = %v (kept %v), want its error", err, r.err)
	}
}
