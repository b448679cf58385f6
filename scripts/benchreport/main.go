// Command benchreport turns the output of `make bench`'s benchmarks into one
// table: each figure, the baseline measured beside it in the same run, their
// ratio and the target. It prints the table, writes it as JSON (for
// comparison across commits) and, with -readme, regenerates the README's
// "Measured here" table between its markers.
//
//	go test -bench ... | tee -a raw.txt
//	go run ./scripts/benchreport -json bench.json -readme README.md raw.txt
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	jsonPath := flag.String("json", "bench.json", "write the table as JSON here")
	readme := flag.String("readme", "", "regenerate the measured table of this README")
	commit := flag.String("commit", "", "the commit measured, recorded in the JSON")
	flag.Parse()
	if err := run(flag.Args(), *jsonPath, *readme, *commit, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(inputs []string, jsonPath, readme, commit string, stdout io.Writer) error {
	res := results{}
	for _, in := range inputs {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		err = res.parse(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	}
	rep := report{Commit: commit, Date: time.Now().UTC().Format(time.RFC3339), Rows: evaluate(res, rows)}
	if len(rep.Rows) == 0 {
		return errors.New("no benchmark figures in the input")
	}
	fmt.Fprint(stdout, rep.text())
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, append(data, '\n'), 0o644); err != nil {
		return err
	}
	if readme == "" {
		return nil
	}
	old, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	updated, err := replaceBlock(string(old), rep.markdown())
	if err != nil {
		return fmt.Errorf("%s: %w", readme, err)
	}
	return os.WriteFile(readme, []byte(updated), 0o644)
}

// results holds each benchmark's metrics by unit ("ns/op", "MiB/s", ...),
// the benchmark named without its -GOMAXPROCS suffix.
type results map[string]map[string]float64

// parse reads `go test -bench` output; other lines are skipped.
func (r results) parse(in io.Reader) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with a benchmark's name
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := r[name]
		if m == nil {
			m = map[string]float64{}
			r[name] = m
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return fmt.Errorf("benchmark %s: metric %q: %w", name, f[i+1], err)
			}
			m[f[i+1]] = v
		}
	}
	return sc.Err()
}

// source names one figure: a benchmark's metric ("" is ns/op), scaled into
// the row's unit.
type source struct {
	bench, metric string
	scale         float64
}

func (s source) get(r results) (float64, bool) {
	metric := s.metric
	if metric == "" {
		metric = "ns/op"
	}
	v, ok := r[s.bench][metric]
	if !ok || (metric == "ns/op" && v == 0) {
		return 0, false
	}
	scale := s.scale
	if scale == 0 {
		scale = 1
	}
	return v * scale, true
}

// rowDef is one line of the table. With a baseline, the target is on the
// ratio figure/baseline; without one, on the figure itself. Max and Min
// bound it (0: no bound).
type rowDef struct {
	what, baseline string
	fig, base      source
	unit           string
	max, min       float64
}

const (
	sec  = 1e-9 // ns/op → s
	msec = 1e-6 // ns/op → ms
)

// Row is one evaluated line, as bench.json records it.
type Row struct {
	What     string   `json:"what"`
	Figure   float64  `json:"figure"`
	Baseline *float64 `json:"baseline,omitempty"`
	Against  string   `json:"against,omitempty"`
	Unit     string   `json:"unit"`
	Ratio    *float64 `json:"ratio,omitempty"`
	Target   string   `json:"target,omitempty"`
	Met      *bool    `json:"met,omitempty"`
}

type report struct {
	Commit string `json:"commit,omitempty"`
	Date   string `json:"date"`
	Rows   []Row  `json:"rows"`
}

// evaluate computes the rows whose figures were measured; the others are
// left out (a partial `make bench` reports what it ran).
func evaluate(r results, defs []rowDef) []Row {
	var out []Row
	for _, d := range defs {
		fig, ok := d.fig.get(r)
		if !ok {
			continue
		}
		row := Row{What: d.what, Figure: fig, Unit: d.unit}
		subject := fig
		if d.base.bench != "" {
			base, ok := d.base.get(r)
			if !ok || base == 0 {
				continue
			}
			ratio := fig / base
			row.Baseline, row.Against, row.Ratio = &base, d.baseline, &ratio
			subject = ratio
		}
		if d.max != 0 || d.min != 0 {
			met := (d.max == 0 || subject <= d.max) && (d.min == 0 || subject >= d.min)
			row.Met = &met
			row.Target = target(d)
		}
		out = append(out, row)
	}
	return out
}

func target(d rowDef) string {
	suffix := " " + d.unit
	if d.base.bench != "" {
		suffix = "×"
	}
	var parts []string
	if d.min != 0 {
		parts = append(parts, "≥ "+strconv.FormatFloat(d.min, 'f', -1, 64)+suffix)
	}
	if d.max != 0 {
		parts = append(parts, "≤ "+strconv.FormatFloat(d.max, 'f', -1, 64)+suffix)
	}
	return strings.Join(parts, ", ")
}

func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func (row Row) cells() (fig, base, ratio, verdict string) {
	fig = num(row.Figure) + " " + row.Unit
	if row.Baseline != nil {
		base = num(*row.Baseline) + " " + row.Unit + " (" + row.Against + ")"
		ratio = num(*row.Ratio) + "×"
	}
	switch {
	case row.Met == nil:
	case *row.Met:
		verdict = row.Target + ": met"
	default:
		verdict = row.Target + ": **missed**"
	}
	return fig, base, ratio, verdict
}

func (rep report) text() string {
	var b strings.Builder
	b.WriteString("make bench:\n")
	for _, row := range rep.Rows {
		fig, base, ratio, verdict := row.cells()
		fmt.Fprintf(&b, "  %-62s %14s", row.What, fig)
		if base != "" {
			fmt.Fprintf(&b, "  against %s  ratio %s", base, ratio)
		}
		if verdict != "" {
			fmt.Fprintf(&b, "  [%s]", strings.ReplaceAll(verdict, "**", ""))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func (rep report) markdown() string {
	var b strings.Builder
	b.WriteString("| what | figure | baseline (same run) | ratio | target |\n| --- | --- | --- | --- | --- |\n")
	for _, row := range rep.Rows {
		fig, base, ratio, verdict := row.cells()
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", row.What, fig, base, ratio, verdict)
	}
	fmt.Fprintf(&b, "\nGenerated by `make bench` (bench.json) on %s", rep.Date[:10])
	if rep.Commit != "" {
		fmt.Fprintf(&b, " at %s", rep.Commit)
	}
	b.WriteString(".\n")
	return b.String()
}

const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// replaceBlock puts block between the markers, which must both be there.
func replaceBlock(doc, block string) (string, error) {
	i := strings.Index(doc, beginMarker)
	j := strings.Index(doc, endMarker)
	if i < 0 || j < i {
		return "", fmt.Errorf("no %s … %s block to regenerate", beginMarker, endMarker)
	}
	return doc[:i+len(beginMarker)] + "\n" + block + doc[j:], nil
}
