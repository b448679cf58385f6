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

// getSh downloads 100 MiB once, over $2 (http or https), from wherever it
// runs through $1: "direct" (a client container on the test network),
// "proxy" (an agent's sandbox, through its relay and proxy), or the
// forward proxy "squid" or "tinyproxy" (containers on the test network),
// and prints the speed and the size.
const getSh = `mode=$1 scheme=$2
case $mode in
direct) set -- --noproxy '*' ;;
proxy) set -- --noproxy '' -x http://127.0.0.1:3128 ;;
squid) set -- --noproxy '' -x http://squid.test:3128 ;;
tinyproxy) set -- --noproxy '' -x http://tinyproxy.test:8888 ;;
*) echo "unknown mode $mode" >&2; exit 2 ;;
esac
s=$(curl -sS "$@" --cacert "$(dirname "$0")/ca.pem" -o /dev/null -w '%{speed_download} %{size_download}' "$scheme://allowed.test/blob/104857600") || exit 1
echo "BENCH bytes_per_s ${s% *}"
echo "BENCH size ${s#* }"
`

// agentSh runs in the agent's sandbox and measures when told to, over two
// FIFOs in its workspace, so that the benchmark can take the sandbox's
// downloads in turn with the other clients' instead of one batch after
// the other on a machine whose load changes. Blocking on a FIFO costs no
// CPU while the others measure.
const agentSh = `cd "$(dirname "$0")"
mkfifo cmd.fifo res.fifo && touch ready || exit 1
while read m < cmd.fifo; do
	# Before the redirection below, which waits for the reader.
	[ "$m" = done ] && break
	case $m in
	latency) python3 bench.py proxy ;;
	*) sh get.sh proxy "$m" ;;
	esac > res.fifo 2>&1
done
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

// squidConf and tinyproxyConf make Debian's squid and tinyproxy plain
// forward proxies: anyone on the test network may use them, to any port,
// nothing cached, nothing logged per request.
const squidConf = `http_port 3128
http_access allow all
cache deny all
access_log none
cache_log stdio:/dev/stderr
pid_filename none
shutdown_lifetime 0 seconds
`

const tinyproxyConf = `User nobody
Group nogroup
Port 8888
Listen 0.0.0.0
Timeout 600
MaxClients 100
LogLevel Critical
`

// egressModes are the ways to the upstream the benchmark compares.
var egressModes = []string{"direct", "proxy", "squid", "tinyproxy"}

// egressRounds is how many times each download is taken, in turn.
const egressRounds = 5

// BenchmarkEgress compares, in one run, a 100 MiB download over HTTP and
// over HTTPS (a CONNECT tunnel through the proxies) taken four ways: from
// a client container on the test network directly, from an agent's
// sandbox through its relay and airlock's proxy, and from the client
// container through Debian's squid and tinyproxy (containers on the same
// network, plain forward proxies). The four are taken in turn, round after
// round, each round in another order; the ratios are per round (each
// proxy against the direct download next to it), median and spread. It
// also reports the median latency of small requests directly and through
// airlock, and the proxy container's peak memory. scripts/bench.sh prints
// the table (targets: airlock >= 0.9x direct and ahead of squid and
// tinyproxy, under 2 ms added per request).
func BenchmarkEgress(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	w := newWorld(b)
	up := w.start("up", "allowed.test")
	fwd := forwardProxyImage(b, w.image)
	for name, content := range map[string]string{"squid.conf": squidConf, "tinyproxy.conf": tinyproxyConf} {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for _, p := range [][]string{
		{"squid", "squid", "-N", "-f", "/srv/squid.conf"},
		{"tinyproxy", "tinyproxy", "-d", "-c", "/srv/tinyproxy.conf"},
	} {
		w.docker(append([]string{"run", "-d", "--name", w.prefix + "-" + p[0], "--label", "airlock-e2e=1",
			"--network", w.network, "--network-alias", p[0] + ".test", "--user", "0", "-v", w.dir + ":/srv:ro", fwd}, p[1:]...)...)
	}
	e := &env{state: b.TempDir(), repo: filepath.Join(b.TempDir(), "repo")}
	initRepoB(b, e)
	files := map[string]string{
		".airlock/config.toml": fmt.Sprintf("[egress]\nnetwork = %q\nallow = [\"allowed.test\"]\nallow_cidrs = [\"%s/32\"]\n", w.network, up.ip),
		"agent.sh":             agentSh,
		"get.sh":               getSh,
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
	client := w.prefix + "-client"
	w.docker("run", "-d", "--name", client, "--label", "airlock-e2e=1", "--network", w.network,
		"-v", e.repo+":/w:ro", w.image, "sleep", "infinity")
	// The forward proxies answer once they are up.
	for _, m := range []string{"squid", "tinyproxy"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := w.command("exec", client, "curl", "-sf", "-o", "/dev/null", "--noproxy", "", "-x",
				map[string]string{"squid": "http://squid.test:3128", "tinyproxy": "http://tinyproxy.test:8888"}[m],
				"http://allowed.test/bench/ready").Run()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s did not start:\n%s", m, w.logs(w.prefix+"-"+m))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	for b.Loop() {
		srv := testkit.NewServer(runScript("bench", "sh agent.sh > agent.txt 2>&1"))
		url, err := srv.Start(shared.gateway + ":0")
		if err != nil {
			b.Fatal(err)
		}
		e.extra = []string{"ANTHROPIC_API_KEY=sk-ant-bench", "ANTHROPIC_BASE_URL=" + url}
		id := strings.TrimSpace(airlockB(b, e, "run", "-d", "-y", "-m", "Benchmark.", "--name", "egress-bench"))
		ws := filepath.Join(e.state, "airlock", "runs", id, "workspace")
		waitFile(b, filepath.Join(ws, "ready"), 5*time.Minute)
		measure := func(mode, what string) map[string]float64 {
			if mode == "proxy" {
				return benchFigures(b, agentDo(b, ws, what))
			}
			if what == "latency" {
				return benchFigures(b, w.docker("exec", client, "python3", "/w/bench.py", mode))
			}
			return benchFigures(b, w.docker("exec", client, "sh", "/w/get.sh", mode, what))
		}

		speed := map[string][]float64{}  // mode-scheme: MiB/s per round
		ratios := map[string][]float64{} // mode-scheme: against direct, per round
		mib := float64(1 << 20)
		for round := range egressRounds {
			for _, scheme := range []string{"http", "https"} {
				got := map[string]float64{}
				for i := range egressModes {
					mode := egressModes[(i+round)%len(egressModes)]
					f := measure(mode, scheme)
					if f["size"] != 104857600 {
						b.Fatalf("%s %s: %v bytes, want 100 MiB", mode, scheme, f["size"])
					}
					got[mode] = f["bytes_per_s"]
					speed[mode+"-"+scheme] = append(speed[mode+"-"+scheme], got[mode]/mib)
				}
				for _, mode := range egressModes[1:] {
					ratios[mode+"-"+scheme] = append(ratios[mode+"-"+scheme], got[mode]/got["direct"])
				}
			}
		}
		d, p := measure("direct", "latency"), measure("proxy", "latency")
		peak, rss := proxyMemory(b, "airlock-"+id+"-proxy")
		agentSay(b, ws, "done")
		airlockB(b, e, "wait", id)
		srv.Close()
		airlockB(b, e, "rm", "-y", "--force", id)

		// Names as before for airlock ("proxied"); squid's and
		// tinyproxy's alongside.
		names := map[string]string{"direct": "direct", "proxy": "proxied", "squid": "squid", "tinyproxy": "tinyproxy"}
		for _, scheme := range []string{"http", "https"} {
			for _, mode := range egressModes {
				b.ReportMetric(medianOf(speed[mode+"-"+scheme]), names[mode]+"-"+scheme+"-MiB/s")
			}
			for _, mode := range egressModes[1:] {
				rs := ratios[mode+"-"+scheme]
				prefix := names[mode] + "-" + scheme
				if mode == "proxy" {
					prefix = scheme
				}
				b.ReportMetric(medianOf(rs), prefix+"-ratio")
				b.ReportMetric(slices.Min(rs), prefix+"-ratio-min")
				b.ReportMetric(slices.Max(rs), prefix+"-ratio-max")
			}
		}
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

// forwardProxyImage is the agent image with Debian's squid and tinyproxy
// added, built once per agent image.
func forwardProxyImage(b *testing.B, base string) string {
	b.Helper()
	tag := strings.NewReplacer(":", "-", "/", "-").Replace(base)
	ref := "airlock-bench-fwdproxies:" + tag
	if exec.Command("docker", "image", "inspect", ref).Run() == nil {
		return ref
	}
	dockerfile := "FROM " + base + "\nUSER root\n" +
		"RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends squid tinyproxy && rm -rf /var/lib/apt/lists/*\n"
	cmd := exec.Command("docker", "build", "-q", "-t", ref, "-")
	cmd.Stdin = strings.NewReader(dockerfile)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", ref, err, out)
	}
	return ref
}

// agentDo has the agent's sandbox measure what and returns its output.
func agentDo(b *testing.B, ws, what string) string {
	b.Helper()
	agentSay(b, ws, what)
	out, err := os.ReadFile(filepath.Join(ws, "res.fifo"))
	if err != nil {
		b.Fatalf("agent's %s: %v", what, err)
	}
	return string(out)
}

func agentSay(b *testing.B, ws, what string) {
	b.Helper()
	if err := os.WriteFile(filepath.Join(ws, "cmd.fifo"), []byte(what+"\n"), 0); err != nil {
		b.Fatalf("tell the agent %s: %v", what, err)
	}
}

func medianOf(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
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
