package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// benchSh measures from wherever it runs ("direct": a container on the
// test network; "proxy": an agent's sandbox, through its relay and proxy):
// three 100 MiB downloads over HTTP and over HTTPS, then small requests.
const benchSh = `cd "$(dirname "$0")"
mode=$1
get() {
	if [ "$mode" = proxy ]; then curl -sS -x http://127.0.0.1:3128 --noproxy '' "$@"
	else curl -sS --noproxy '*' "$@"; fi
}
for scheme in http https; do
	for i in 1 2 3; do
		s=$(get --cacert ca.pem -o /dev/null -w '%{speed_download} %{size_download}' "$scheme://allowed.test/blob/104857600") || exit 1
		echo "BENCH ${scheme}_bytes_per_s ${s% *}"
		echo "BENCH ${scheme}_size ${s#* }"
	done
done
python3 bench.py "$mode"
`

// benchPy times small GETs one after another: each on a new connection
// (what a tool spawning curl does) and all on one kept-alive connection.
const benchPy = `import http.client, statistics, sys, time
mode = sys.argv[1]
def conn():
    if mode == 'proxy':
        return http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)
    return http.client.HTTPConnection('allowed.test', 80, timeout=10)
path = 'http://allowed.test/bench/small' if mode == 'proxy' else '/bench/small'
def get(c):
    c.request('GET', path, headers={'Host': 'allowed.test'})
    r = c.getresponse()
    r.read()
    if r.status != 200:
        raise SystemExit('status %d' % r.status)
def median_ms(fn, n=300, warm=30):
    out = []
    for i in range(n + warm):
        t0 = time.perf_counter()
        fn()
        if i >= warm:
            out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1000
def fresh():
    c = conn()
    get(c)
    c.close()
print('BENCH latency_new_conn_ms', median_ms(fresh))
keep = conn()
print('BENCH latency_keepalive_ms', median_ms(lambda: get(keep)))
`

// BenchmarkEgress compares, in one run, a 100 MiB download from a test
// container directly (a client container on the test network) with the same
// download from an agent's sandbox through its relay and proxy, and the
// median latency of small requests both ways; it reports the proxy
// container's peak memory. scripts/bench.sh prints the ratios (targets:
// throughput at least 0.9x direct, under 2 ms added per request).
func BenchmarkEgress(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	w := newWorld(b)
	up := w.start("up", "allowed.test")
	e := &env{state: b.TempDir(), repo: filepath.Join(b.TempDir(), "repo")}
	initRepoB(b, e)
	files := map[string]string{
		".airlock/config.toml": fmt.Sprintf("[egress]\nnetwork = %q\nallow = [\"allowed.test\"]\nallow_cidrs = [\"%s/32\"]\n", w.network, up.ip),
		"bench.sh":             benchSh,
		"bench.py":             benchPy,
		"ca.pem":               string(w.caPEM),
	}
	for name, content := range files {
		path := filepath.Join(e.repo, name)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	gitB(b, e.repo, "add", ".")
	gitB(b, e.repo, "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-qm", "bench")

	for b.Loop() {
		direct := w.docker("run", "--rm", "--network", w.network, "-v", e.repo+":/w:ro", w.image, "sh", "/w/bench.sh", "direct")

		srv := testkit.NewServer(runScript("bench", "sh bench.sh proxy > bench.txt 2>&1; touch benchdone; "+
			"i=0; while [ ! -e measured ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"))
		url, err := srv.Start(shared.gateway + ":0")
		if err != nil {
			b.Fatal(err)
		}
		e.extra = []string{"ANTHROPIC_API_KEY=sk-ant-bench", "ANTHROPIC_BASE_URL=" + url}
		id := strings.TrimSpace(airlockB(b, e, "run", "-d", "-y", "-m", "Benchmark.", "--name", "egress-bench"))
		ws := filepath.Join(e.state, "airlock", "runs", id, "workspace")
		waitFile(b, filepath.Join(ws, "benchdone"), 5*time.Minute)
		peak, rss := proxyMemory(b, "airlock-"+id+"-proxy")
		os.WriteFile(filepath.Join(ws, "measured"), nil, 0o644)
		airlockB(b, e, "wait", id)
		srv.Close()
		proxied, err := os.ReadFile(filepath.Join(ws, "bench.txt"))
		if err != nil {
			b.Fatal(err)
		}
		airlockB(b, e, "rm", "-y", "--force", id)

		d, p := benchFigures(b, direct), benchFigures(b, string(proxied))
		for _, k := range []string{"http_size", "https_size"} {
			if d[k] != 104857600 || p[k] != 104857600 {
				b.Fatalf("%s: direct %v, proxied %v bytes, want 100 MiB both", k, d[k], p[k])
			}
		}
		mib := float64(1 << 20)
		b.ReportMetric(d["http_bytes_per_s"]/mib, "direct-http-MiB/s")
		b.ReportMetric(p["http_bytes_per_s"]/mib, "proxied-http-MiB/s")
		b.ReportMetric(p["http_bytes_per_s"]/d["http_bytes_per_s"], "http-ratio")
		b.ReportMetric(d["https_bytes_per_s"]/mib, "direct-https-MiB/s")
		b.ReportMetric(p["https_bytes_per_s"]/mib, "proxied-https-MiB/s")
		b.ReportMetric(p["https_bytes_per_s"]/d["https_bytes_per_s"], "https-ratio")
		b.ReportMetric(d["latency_new_conn_ms"], "direct-new-conn-ms")
		b.ReportMetric(p["latency_new_conn_ms"], "proxied-new-conn-ms")
		b.ReportMetric(p["latency_new_conn_ms"]-d["latency_new_conn_ms"], "added-new-conn-ms")
		b.ReportMetric(d["latency_keepalive_ms"], "direct-keepalive-ms")
		b.ReportMetric(p["latency_keepalive_ms"], "proxied-keepalive-ms")
		b.ReportMetric(p["latency_keepalive_ms"]-d["latency_keepalive_ms"], "added-keepalive-ms")
		b.ReportMetric(peak/mib, "proxy-peak-MiB")
		b.ReportMetric(rss/mib, "proxy-rss-MiB")
	}
}

// benchFigures parses "BENCH key value" lines; a key measured more than
// once is its median.
func benchFigures(b *testing.B, out string) map[string]float64 {
	b.Helper()
	all := map[string][]float64{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "BENCH" {
			continue
		}
		v, err := strconv.ParseFloat(f[2], 64)
		if err != nil {
			b.Fatalf("bad figure %q", line)
		}
		all[f[1]] = append(all[f[1]], v)
	}
	if len(all) == 0 {
		b.Fatalf("no figures in:\n%s", out)
	}
	med := map[string]float64{}
	for k, vs := range all {
		slices.Sort(vs)
		med[k] = vs[len(vs)/2]
	}
	return med
}

// proxyMemory reads the proxy container's peak memory use (cgroup v1,
// page cache included) and its current resident memory.
func proxyMemory(b *testing.B, container string) (peak, rss float64) {
	b.Helper()
	out, err := exec.Command("docker", "inspect", "-f", "{{.Id}}", container).Output()
	if err != nil {
		b.Fatalf("inspect %s: %v", container, err)
	}
	dir := filepath.Join("/sys/fs/cgroup/memory/docker", strings.TrimSpace(string(out)))
	data, err := os.ReadFile(filepath.Join(dir, "memory.max_usage_in_bytes"))
	if err != nil {
		b.Fatalf("proxy memory: %v", err)
	}
	peak, _ = strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
	stat, _ := os.ReadFile(filepath.Join(dir, "memory.stat"))
	for _, line := range strings.Split(string(stat), "\n") {
		if v, ok := strings.CutPrefix(line, "total_rss "); ok {
			rss, _ = strconv.ParseFloat(v, 64)
		}
	}
	return peak, rss
}

func airlockB(b *testing.B, e *env, args ...string) string {
	b.Helper()
	cmd := exec.Command(shared.bin, args...)
	cmd.Dir = e.repo
	cmd.Env = e.environ()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("airlock %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func gitB(b *testing.B, dir string, args ...string) {
	b.Helper()
	if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, out)
	}
}
