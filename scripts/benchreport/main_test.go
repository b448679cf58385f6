package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkStartup/bare-2         	      10	 260000000 ns/op
BenchmarkStartup/airlock-2      	      10	 338000000 ns/op
BenchmarkStartup/airlock-2 took long   (a log line)
BenchmarkEgress-2   	       1	      1671 direct-http-MiB/s	       954.0 proxied-http-MiB/s	  0.1600 added-new-conn-ms
BenchmarkAgentImageCold-2   	       1	        72.5 agent-image-s	         0 ns/op
PASS
`

func TestEvaluate(t *testing.T) {
	res := results{}
	if err := res.parse(strings.NewReader(sample)); err != nil {
		t.Fatal(err)
	}
	got := map[string]Row{}
	for _, row := range evaluate(res, rows) {
		got[row.What] = row
	}
	tests := []struct {
		what         string
		figure       float64
		ratio        float64 // 0: no baseline
		met, present bool
	}{
		{"start-up, Docker (`airlock run -d` until the agent runs)", 338, 1.3, true, true},
		{"proxy throughput, 100 MiB over HTTP", 954, 954.0 / 1671, false, true},
		{"proxy latency added, new connection per request", 0.16, 0, true, true},
		{"cold start: agent image from scratch (base present, warm package cache)", 72.5, 0, false, true},
		// Not measured in this run: left out, not reported as zero.
		{"whole run, Incus (btrfs pool)", 0, 0, false, false},
		{"proxy throughput, 100 MiB over HTTPS (CONNECT)", 0, 0, false, false},
	}
	for _, tt := range tests {
		row, ok := got[tt.what]
		if ok != tt.present {
			t.Errorf("%s: present = %v, want %v", tt.what, ok, tt.present)
			continue
		}
		if !ok {
			continue
		}
		if diff := row.Figure - tt.figure; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s: figure %v, want %v", tt.what, row.Figure, tt.figure)
		}
		if (row.Ratio == nil) != (tt.ratio == 0) || row.Ratio != nil && (*row.Ratio-tt.ratio > 1e-9 || tt.ratio-*row.Ratio > 1e-9) {
			t.Errorf("%s: ratio %v, want %v", tt.what, row.Ratio, tt.ratio)
		}
		if row.Met == nil || *row.Met != tt.met {
			t.Errorf("%s: met %v, want %v", tt.what, row.Met, tt.met)
		}
	}
}

func TestRunWritesJSONAndREADME(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "raw.txt")
	os.WriteFile(raw, []byte(sample), 0o644)
	readme := filepath.Join(dir, "README.md")
	os.WriteFile(readme, []byte("# x\n\n"+beginMarker+"\nold table\n"+endMarker+"\nafter\n"), 0o644)
	jsonPath := filepath.Join(dir, "bench.json")
	var out bytes.Buffer
	if err := run([]string{raw}, jsonPath, readme, "abc123", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ratio 1.30×") || !strings.Contains(out.String(), "missed") {
		t.Errorf("table:\n%s", out.String())
	}
	var rep report
	data, _ := os.ReadFile(jsonPath)
	if err := json.Unmarshal(data, &rep); err != nil || rep.Commit != "abc123" || len(rep.Rows) != 4 {
		t.Errorf("bench.json = %s (%v)", data, err)
	}
	doc, _ := os.ReadFile(readme)
	if strings.Contains(string(doc), "old table") || !strings.Contains(string(doc), "| start-up, Docker") || !strings.HasSuffix(string(doc), endMarker+"\nafter\n") {
		t.Errorf("README:\n%s", doc)
	}
	// A README without the markers is an error and is left as it was.
	os.WriteFile(readme, []byte("no markers\n"), 0o644)
	if err := run([]string{raw}, jsonPath, readme, "", &out); err == nil || !strings.Contains(err.Error(), "bench:begin") {
		t.Errorf("README without markers: %v", err)
	}
	if doc, _ := os.ReadFile(readme); string(doc) != "no markers\n" {
		t.Errorf("README changed: %q", doc)
	}
}

// The Kubernetes rows come from one benchmark's metrics: ratios against
// the bare pods with no target of their own, and the absolute
// start-up target for a warm pool (met here, missed by the cold start).
func TestKubernetesRows(t *testing.T) {
	const out = "BenchmarkKubernetesRun-2   	       3	     10178 airlock-ms	      4481 bare-ms	         2.271 ratio	      5144 start-airlock-ms	      1910 start-bare-ms	         2.693 start-ratio	       800 start-warm-ms	         0.4188 start-warm-ratio	      6000 warm-ms	         1.339 warm-ratio\n"
	res := results{}
	if err := res.parse(strings.NewReader(out)); err != nil {
		t.Fatal(err)
	}
	got := map[string]Row{}
	for _, row := range evaluate(res, rows) {
		got[row.What] = row
	}
	tests := []struct {
		what          string
		figure, ratio float64
		met           *bool
	}{
		{"whole one-turn run, Kubernetes (`airlock run` to its summary)", 10178, 10178.0 / 4481, nil},
		{"start-up, Kubernetes (`airlock run -d` until the agent runs)", 5144, 5144.0 / 1910, nil},
		{"whole one-turn run, Kubernetes, warm pool", 6000, 6000.0 / 4481, nil},
		{"start-up, Kubernetes, warm pool (`airlock run -d` until the agent runs)", 800, 800.0 / 1910, nil},
		{"start-up, Kubernetes, warm pool, under one second", 800, 0, ptrTo(true)},
	}
	if len(got) != len(tests) {
		t.Errorf("%d rows from the Kubernetes benchmark, want %d: %+v", len(got), len(tests), got)
	}
	for _, tt := range tests {
		row, ok := got[tt.what]
		if !ok {
			t.Errorf("no row %q", tt.what)
			continue
		}
		if row.Figure != tt.figure {
			t.Errorf("%s: figure %v, want %v", tt.what, row.Figure, tt.figure)
		}
		if (row.Ratio == nil) != (tt.ratio == 0) || row.Ratio != nil && *row.Ratio != tt.ratio {
			t.Errorf("%s: ratio %v, want %v", tt.what, row.Ratio, tt.ratio)
		}
		if (row.Met == nil) != (tt.met == nil) || row.Met != nil && *row.Met != *tt.met {
			t.Errorf("%s: met %v, want %v", tt.what, row.Met, tt.met)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
