package egress

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// randomToken is a token of n characters drawn from base62 with rng.
func randomToken(rng *rand.Rand, n int) string {
	const a62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = a62[rng.Intn(len(a62))]
	}
	return string(b)
}

// spreadToken is a 40-character token with 40 distinct characters, the
// shape of a random secret, built at run time.
func spreadToken() string {
	const a62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 40)
	for i := range b {
		b[i] = a62[(i*17+5)%len(a62)]
	}
	return string(b)
}

func TestEntropyDetectsRandomTokens(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, tc := range []struct {
		n       int
		minRate float64
	}{{24, 0.4}, {32, 0.8}, {40, 0.99}, {64, 1}} {
		caught := 0
		const draws = 2000
		for range draws {
			if highEntropyToken(randomToken(rng, tc.n)) {
				caught++
			}
		}
		rate := float64(caught) / draws
		t.Logf("random base62 of %d characters: %.1f%% caught", tc.n, 100*rate)
		if rate < tc.minRate {
			t.Errorf("%d characters: %.3f caught, want at least %.2f", tc.n, rate, tc.minRate)
		}
	}
	benign := []string{
		"HTTPServerConfiguration2", "GoogleCloudPlatformSDK2024", "AbstractSingletonProxyFactoryBean1",
		"x86_64-unknown-linux-gnu", "charset_normalizer-3", "v0-0-0-20240110230042-5b4a0e68c2fc",
		"0e2d847013cb52cd35b38c009bb167a1a26b2ce6cd6965bf26b47bc0bf44", // hex
		"6F9619FF-8B86-D011-B42D-00CF4FC964FF",                         // UUID
		"sha512-" + spreadToken() + spreadToken(),                      // SRI
		"h1:" + spreadToken(),                                          // go.sum
		randomToken(rand.New(rand.NewSource(2)), 19),                   // too short
		strings.ToLower(spreadToken()),                                 // one case
	}
	for _, s := range benign {
		if highEntropyToken(s) {
			t.Errorf("highEntropyToken(%q) = true, want false", s)
		}
	}
	if !highEntropyToken("id=" + spreadToken() + "&x=1") {
		t.Error("a 40-character random token was not detected")
	}
}

// readCorpus parses a testdata/benign file into requests.
func readCorpus(t *testing.T, path string) []*http.Request {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*http.Request
	for i, block := range strings.Split(string(data), "####\n") {
		head, body, _ := strings.Cut(block, "\n\n")
		// A gzip-encoded body is stored decoded, so the corpus stays text;
		// it goes to the scanner encoded, as the client sent it.
		if body != "" && regexp.MustCompile(`(?im)^content-encoding:\s*gzip\s*$`).MatchString(head) {
			body = gz(body)
		}
		head = strings.ReplaceAll(strings.TrimRight(head, "\n"), "\n", "\r\n") + "\r\n"
		if body != "" {
			head += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
		}
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head + "\r\n" + body)))
		if err != nil {
			t.Fatalf("%s request %d: %v", path, i+1, err)
		}
		out = append(out, req)
	}
	return out
}

func TestBenignCorpus(t *testing.T) {
	files, _ := filepath.Glob("testdata/benign/*.http")
	if len(files) < 5 {
		t.Fatalf("benign corpus: %d files, want npm, pip, apt, go and git", len(files))
	}
	if rec, _ := filepath.Glob("testdata/benign/*.recorded.http"); len(rec) < 3 {
		t.Fatalf("benign corpus: %d recorded files, want npm, apt and go (see testdata/benign/README.md)", len(rec))
	}
	s := NewScanner([]string{"sk-ant-api03-" + r("Zy9x", 80)})
	total := 0
	for _, f := range files {
		for i, req := range readCorpus(t, f) {
			total++
			hit, err := s.ScanRequest(req, 256<<10)
			if err != nil {
				t.Fatal(err)
			}
			if hit != nil {
				t.Errorf("%s request %d (%s %s): refused, %s", filepath.Base(f), i+1, req.Method, req.RequestURI, hit)
			}
		}
	}
	t.Logf("%d benign requests, none refused", total)
}

func newReq(t *testing.T, method, target string, header map[string]string, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.RequestURI = req.URL.RequestURI()
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

func gz(s string) string {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func TestScanRequest(t *testing.T) {
	held := "held-" + r("Qw3rty", 30)
	s := NewScanner([]string{held})
	stripe := "sk_" + "live_" + r("a1B2", 24)
	random := spreadToken()
	cases := []struct {
		name    string
		req     *http.Request
		rule    string
		where   string
		noLeaks []string // must not appear in Where
	}{
		{"query value", newReq(t, "GET", "http://h.test/x?key="+stripe, nil, ""), "stripe-secret-key", `query value "key"`, nil},
		{"path", newReq(t, "GET", "http://h.test/up/"+stripe+"/x", nil, ""), "stripe-secret-key", "URL path", nil},
		{"header", newReq(t, "GET", "http://h.test/", map[string]string{"X-Token": stripe}, ""), "stripe-secret-key", "header X-Token", nil},
		{"secret as a header name", withHeader(newReq(t, "GET", "http://h.test/", nil, ""), "X-"+stripe, "1"), "stripe-secret-key", "a header", nil},
		{"secret as a query name", newReq(t, "GET", "http://h.test/?"+stripe+"=1", nil, ""), "stripe-secret-key", "URL", nil},
		{"basic auth", newReq(t, "GET", "http://h.test/", map[string]string{"Authorization": "Basic " + b64std("user:"+stripe)}, ""), "stripe-secret-key", "header Authorization", nil},
		{"body", newReq(t, "POST", "http://h.test/", nil, `{"k":"`+stripe+`"}`), "stripe-secret-key", "body", nil},
		{"gzip body", newReq(t, "POST", "http://h.test/", map[string]string{"Content-Encoding": "gzip"}, gz(strings.Repeat("x", 3000)+" "+stripe+" "+strings.Repeat("y", 5000))), "stripe-secret-key", "body", nil},
		{"brotli body", newReq(t, "POST", "http://h.test/", map[string]string{"Content-Encoding": "br"}, "\x8b\x02\x80hello\x03"), UninspectableRule, "body (Content-Encoding br)", nil},
		{"held in body", newReq(t, "POST", "http://h.test/", nil, "a="+held), "held-secret", "body", nil},
		{"random query value", newReq(t, "GET", "http://h.test/?q="+random, nil, ""), EntropyRule, `query value "q"`, nil},
		{"random path segment", newReq(t, "GET", "http://h.test/a/"+random+"/b", nil, ""), EntropyRule, "URL path", nil},
		{"random header", newReq(t, "GET", "http://h.test/", map[string]string{"X-Trace": random}, ""), EntropyRule, "header X-Trace", nil},
		{"random bearer token", newReq(t, "GET", "http://h.test/", map[string]string{"Authorization": "Bearer " + random}, ""), EntropyRule, "header Authorization", nil},
		{"random basic password", newReq(t, "GET", "http://h.test/", map[string]string{"Authorization": "Basic " + b64std("user:"+random)}, ""), EntropyRule, "header Authorization", nil},
		{"random query name", newReq(t, "GET", "http://h.test/?"+random+"=1", nil, ""), EntropyRule, "a query parameter name", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before []byte
			if tc.req.Body != nil {
				before, _ = io.ReadAll(tc.req.Body)
				tc.req.Body = io.NopCloser(bytes.NewReader(before))
			}
			hit, err := s.ScanRequest(tc.req, 4<<10)
			if err != nil {
				t.Fatal(err)
			}
			if hit == nil || hit.Rule != tc.rule || hit.Where != tc.where {
				t.Fatalf("hit = %v, want %s in %s", hit, tc.rule, tc.where)
			}
			if strings.Contains(hit.String(), stripe) || strings.Contains(hit.String(), random) || strings.Contains(hit.String(), held) {
				t.Errorf("the hit names the secret: %s", hit)
			}
			if tc.req.Body != nil {
				after, _ := io.ReadAll(tc.req.Body)
				if !bytes.Equal(before, after) {
					t.Errorf("body changed: %d bytes before, %d after", len(before), len(after))
				}
			}
		})
	}

	t.Run("beyond the body limit", func(t *testing.T) {
		req := newReq(t, "POST", "http://h.test/", nil, strings.Repeat("x", 5000)+stripe)
		if hit, _ := s.ScanRequest(req, 4<<10); hit != nil {
			t.Errorf("hit %s beyond the limit", hit)
		}
		if hit, _ := s.ScanRequest(req, 0); hit != nil {
			t.Errorf("hit %s with body scanning off", hit)
		}
		if b, _ := io.ReadAll(req.Body); len(b) != 5000+len(stripe) {
			t.Errorf("forwarded body is %d bytes", len(b))
		}
	})
	t.Run("basic auth with a placeholder", func(t *testing.T) {
		req := newReq(t, "GET", "http://h.test/info/refs?service=git-upload-pack",
			map[string]string{"Authorization": "Basic " + b64std("x-access-token:airlock-placeholder-"+r("0a1b2c3d4e5f", 32))}, "")
		if hit, _ := s.ScanRequest(req, 4<<10); hit != nil {
			t.Errorf("hit %s", hit)
		}
	})
	t.Run("held only", func(t *testing.T) {
		req := newReq(t, "GET", "http://h.test/?a="+stripe+"&b="+random, nil, "")
		if hit, _ := s.ScanRequestHeld(req, 4<<10); hit != nil {
			t.Errorf("held-only scan found %s", hit)
		}
		req = newReq(t, "POST", "http://h.test/?a="+stripe, nil, held)
		if hit, _ := s.ScanRequestHeld(req, 4<<10); hit == nil || !hit.Held {
			t.Errorf("held-only scan found %v, want the held secret", hit)
		}
	})
}

func TestScanModes(t *testing.T) {
	c := ScanConfig{Mode: ScanBlock, Hosts: []ScanHostRule{
		{"*.example.com", ScanOff},
		{"secure.example.com", ScanBlock},
		{"*.dev.example.com", ScanLog},
		{"twice.test", ScanOff},
		{"twice.test", ScanLog},
	}}
	for host, want := range map[string]ScanMode{
		"other.test":         ScanBlock,
		"example.com":        ScanOff,
		"a.example.com":      ScanOff,
		"secure.example.com": ScanBlock,
		"x.dev.example.com":  ScanLog,
		"twice.test":         ScanLog,
	} {
		if got := c.ModeFor(host); got != want {
			t.Errorf("ModeFor(%s) = %s, want %s", host, got, want)
		}
	}
	if _, err := ParseScanMode("warn"); err == nil || !strings.Contains(err.Error(), "block, log or off") {
		t.Errorf("ParseScanMode(warn) = %v", err)
	}
	if _, err := ParseScanHost("example.com:443"); err == nil {
		t.Error("ParseScanHost accepted a port")
	}
}

// header2K is a typical plain-HTTP request's header block, about 2 KiB.
func header2K() *http.Request {
	req, _ := http.NewRequest("GET", "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/"+r("0e2d847013cb52cd35b38c009bb167a1a2", 64)+"?arch=amd64&lang=en", nil)
	req.RequestURI = req.URL.String()
	h := req.Header
	h.Set("User-Agent", `pip/23.3.1 {"ci":null,"cpu":"x86_64","distro":{"id":"bookworm","libc":{"lib":"glibc","version":"2.36"},"name":"Debian GNU/Linux","version":"12"},"implementation":{"name":"CPython","version":"3.11.2"},"installer":{"name":"pip","version":"23.3.1"},"openssl_version":"OpenSSL 3.0.11 19 Sep 2023","python":"3.11.2"}`)
	h.Set("Accept", "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01")
	h.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	h.Set("Accept-Language", "en-US,en;q=0.9,de;q=0.8,fr;q=0.7")
	h.Set("Cache-Control", "max-age=0")
	h.Set("If-Modified-Since", "Sat, 07 Oct 2023 09:01:02 GMT")
	h.Set("If-None-Match", `"`+r("5f1e2d3c4b5a6978", 32)+`"`)
	h.Set("Cookie", "session="+r("abcdefgh12", 64)+"; theme=dark; consent=yes; _ga=GA1.2.1234567890.1700000000")
	h.Set("Referer", "http://deb.debian.org/debian/dists/bookworm/main/binary-amd64/")
	h.Set("Traceparent", "00-"+r("0af7651916cd43dd8448eb211c80319c", 32)+"-"+r("b7ad6b7169203331", 16)+"-01")
	h.Set("X-Request-Id", "6f9619ff-8b86-d011-b42d-00cf4fc964ff")
	h.Set("Pacote-Integrity", "sha512-"+r("Zm9vYmFyYmF6cXV4", 86)+"==")
	h.Set("Npm-Session", "e41eae13a33ec2ae")
	h.Set("Git-Protocol", "version=2")
	h.Set("Via", "1.1 cache.internal (squid/5.7)")
	h.Set("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")
	h.Set("X-Forwarded-For", "192.0.2.60, 198.51.100.17")
	for i := range 6 {
		h.Set("X-Custom-Header-"+strconv.Itoa(i), "some ordinary value number "+strconv.Itoa(i)+" with words in it")
	}
	return req
}

// BenchmarkScanRequestHeaders measures the scan of a typical 2 KiB
// plain-HTTP header block (target well under 100 µs), for comparison with
// the rules alone and the old scan of the raw header lines.
func BenchmarkScanRequestHeaders(b *testing.B) {
	req := header2K()
	size := len(req.RequestURI)
	for k, vs := range req.Header {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	s := NewScanner([]string{"sk-ant-api03-" + r("Zy9x", 80)})
	if hit, _ := s.ScanRequest(req, 0); hit != nil {
		b.Fatalf("benign header block refused: %s", hit)
	}
	b.Run("full", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			s.ScanRequest(req, 0)
		}
	})
	b.Run("held-only", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			s.ScanRequestHeld(req, 0)
		}
	})
	b.Logf("header block: %d bytes, %d rules", size, len(RuleNames()))
}

// BenchmarkScanBody measures the scan of a 256 KiB body (the default
// limit).
func BenchmarkScanBody(b *testing.B) {
	body := bytes.Repeat([]byte(`{"name":"left-pad","version":"1.3.0","description":"String left pad","dist":{"shasum":"5b8a3a7765dfe001261dde915589e782f8c94d1e"}},`), 256<<10/120)
	s := NewScanner([]string{"sk-ant-api03-" + r("Zy9x", 80)})
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req, _ := http.NewRequest("POST", "http://h.test/", bytes.NewReader(body))
		req.RequestURI = "/"
		if hit, _ := s.ScanRequest(req, 256<<10); hit != nil {
			b.Fatal(hit)
		}
	}
}

func b64std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// withHeader sets a header under a name as sent, not canonicalised.
func withHeader(req *http.Request, name, value string) *http.Request {
	req.Header[name] = []string{value}
	return req
}

// BenchmarkSecretScan is `make bench`'s figure: the scan of a typical
// 2 KiB plain-HTTP header block (target < 100 µs), against the held-secret
// scan alone (what a host with scan = "off" costs), and of a 256 KiB body.
func BenchmarkSecretScan(b *testing.B) {
	s := NewScanner([]string{"sk-ant-api03-" + r("Zy9x", 80)})
	req := header2K()
	body := bytes.Repeat([]byte(`{"name":"left-pad","version":"1.3.0","description":"String left pad","dist":{"shasum":"5b8a3a7765dfe001261dde915589e782f8c94d1e"}},`), 256<<10/120)
	const n = 2000
	per := func(f func()) float64 {
		f() // warm
		start := time.Now()
		for range n {
			f()
		}
		return float64(time.Since(start).Microseconds()) / n
	}
	for b.Loop() {
		full := per(func() { s.ScanRequest(req, 0) })
		held := per(func() { s.ScanRequestHeld(req, 0) })
		start := time.Now()
		for range 20 {
			r, _ := http.NewRequest("POST", "http://h.test/", bytes.NewReader(body))
			r.RequestURI = "/"
			s.ScanRequest(r, 256<<10)
		}
		b.ReportMetric(full, "headers-us")
		b.ReportMetric(held, "held-only-us")
		b.ReportMetric(float64(time.Since(start).Microseconds())/20/1000, "body-256KiB-ms")
		b.ReportMetric(float64(len(RuleNames())), "rules")
	}
}
