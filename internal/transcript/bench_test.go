package transcript

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

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

// followRate is the growth `logs -f` must keep up with: 10 MiB/s.
const followRate = 10 << 20

// BenchmarkFollow appends a generated transcript to a file at 10 MiB/s
// for five seconds while FollowFileIdle reads it and renders each line as
// `airlock logs -f` does, to a file. It reports how far behind the
// follower is when the writer stops (lag-MiB) and how long it then takes
// to read the rest (catchup-ms): keeping up means a lag of about one poll
// (PollInterval at 10 MiB/s, 1 MiB) and a catch-up of about one poll.
func BenchmarkFollow(b *testing.B) {
	const seconds = 5
	var in bytes.Buffer
	if _, err := testkit.WriteTranscript(&in, seconds*followRate); err != nil {
		b.Fatal(err)
	}
	data := in.Bytes()
	for b.Loop() {
		dir := b.TempDir()
		path := filepath.Join(dir, "agent.jsonl")
		w, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dir, "out"))
		if err != nil {
			b.Fatal(err)
		}
		var read atomic.Int64
		followed := make(chan error, 1)
		go func() {
			bw := bufio.NewWriterSize(out, 64<<10)
			rend := &Renderer{W: bw, Verbosity: 1}
			open := func() (*os.File, error) { return os.Open(path) }
			followed <- FollowFileIdle(context.Background(), open, func() bool { return false }, func(line []byte) error {
				read.Add(int64(len(line)) + 1)
				if evs, err := ParseLine(line); err == nil {
					for _, ev := range evs {
						rend.Render(ev)
					}
				}
				return nil
			}, bw.Flush)
		}()

		// The writer: every 10 ms, what 10 MiB/s has made due by then.
		start := time.Now()
		written := 0
		for written < len(data) {
			time.Sleep(10 * time.Millisecond)
			due := min(len(data), int(time.Since(start).Seconds()*followRate))
			if due > written {
				if _, err := w.Write(data[written:due]); err != nil {
					b.Fatal(err)
				}
				written = due
			}
		}
		stopped := time.Now()
		lag := int64(written) - read.Load()
		if err := <-followed; err != nil {
			b.Fatal(err)
		}
		catchUp := time.Since(stopped)
		w.Close()
		out.Close()
		b.ReportMetric(float64(lag)/(1<<20), "lag-MiB")
		b.ReportMetric(float64(catchUp.Milliseconds()), "catchup-ms")
		b.ReportMetric(float64(written)/(1<<20)/stopped.Sub(start).Seconds(), "write-MiB/s")
	}
}
