package egress

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestScanThroughProxy drives the proxy: hits are refused with the rule
// and place, bodies reach the upstream intact, per-host modes log or skip,
// held secrets are refused in every mode, and the audit log never holds a
// token.
func TestScanThroughProxy(t *testing.T) {
	held := "held-" + r("Qw3rty9", 40)
	stripe := "sk_" + "live_" + r("a1B2", 24)
	sendgrid := "SG." + r("Ab1_", 22) + "." + r("Ab1_", 43)
	random := spreadToken()
	var mu sync.Mutex
	var got []string // what the upstream received: host, target, body
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Host+" "+r.RequestURI+" "+string(b))
		mu.Unlock()
	}))
	defer up.Close()
	upPort := port(t, up.Listener.Addr().String())
	p := startProxy(t, Config{
		Policy: loopbackPolicy(t, fmt.Sprintf("web.test:%d", upPort), fmt.Sprintf("logged.test:%d", upPort), fmt.Sprintf("trusted.test:%d", upPort)),
		Held:   []string{held},
		Scan: ScanConfig{Mode: ScanBlock, BodyLimit: 64 << 10, Hosts: []ScanHostRule{
			{"logged.test", ScanLog}, {"trusted.test", ScanOff},
		}},
		Resolver: fakeResolver{"web.test": lo, "logged.test": lo, "trusted.test": lo},
	})
	url := func(host, target string) string { return fmt.Sprintf("http://%s:%d%s", host, upPort, target) }
	do := func(method, u string, header map[string]string, body string) *http.Response {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, u, rd)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := p.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	big := strings.Repeat("0123456789abcdef\n", 8<<10) // 136 KiB, past the limit

	steps := []struct {
		name, method, url string
		header            map[string]string
		body              string
		deny              string // reason, or "" for allowed
		scan              string // the record's scan field
	}{
		{"query", "GET", url("web.test", "/x?key="+stripe), nil, "", `secret scan: stripe-secret-key in query value "key"`, ""},
		{"header", "GET", url("web.test", "/x"), map[string]string{"X-Mail": sendgrid}, "", "secret scan: sendgrid-api-key in header X-Mail", ""},
		{"body", "POST", url("web.test", "/upload"), nil, `{"k":"` + sendgrid + `"}`, "secret scan: sendgrid-api-key in body", ""},
		{"entropy", "GET", url("web.test", "/x?q="+random), nil, "", `secret scan: high-entropy-token in query value "q"`, ""},
		{"clean body", "POST", url("web.test", "/clean"), nil, big + stripe, "", ""},
		{"logged", "GET", url("logged.test", "/x?key="+stripe), nil, "", "", `logged, not blocked (scan = "log"): stripe-secret-key in query value "key"`},
		{"logged, but held", "POST", url("logged.test", "/x?key="+stripe), nil, held, "secret scan: held-secret in body", ""},
		{"off", "POST", url("trusted.test", "/x?q="+random), map[string]string{"X-Mail": sendgrid}, stripe, "", ""},
		{"off, but held", "GET", url("trusted.test", "/x?h="+held), nil, "", `secret scan: held-secret in query value "h"`, ""},
	}
	for _, st := range steps {
		resp := do(st.method, st.url, st.header, st.body)
		if st.deny != "" {
			assertDenied(t, resp, st.deny)
		} else if resp.StatusCode != 200 {
			t.Errorf("%s: status %d, want 200 (%s)", st.name, resp.StatusCode, resp.Header.Get("X-Airlock-Denied"))
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	recs := p.records(t, len(steps))
	for i, st := range steps {
		rec := recs[i]
		if st.deny != "" && (rec.Allowed || rec.Reason != st.deny) || st.deny == "" && !rec.Allowed || rec.Scan != st.scan {
			t.Errorf("%s: record %+v, want deny %q scan %q", st.name, rec, st.deny, st.scan)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("upstream got %d requests, want the clean body, the logged one and the trusted one:\n%.300s", len(got), strings.Join(got, "\n"))
	}
	if want := fmt.Sprintf("web.test:%d /clean %s", upPort, big+stripe); got[0] != want {
		t.Errorf("the clean body arrived changed: %d bytes, want %d", len(got[0]), len(want))
	}
	log := p.log.String()
	for _, secret := range []string{held, stripe, sendgrid, random, stripe[8:20], random[5:25]} {
		if strings.Contains(log, secret) {
			t.Errorf("the audit log holds a secret (%.12s…)", secret)
		}
	}
}

func TestNewServerRejectsBadScanConfig(t *testing.T) {
	for _, c := range []ScanConfig{
		{Mode: "warn"},
		{Hosts: []ScanHostRule{{"a.test:80", ScanLog}}},
		{Hosts: []ScanHostRule{{"a.test", "loud"}}},
		{Hosts: []ScanHostRule{{"a.test", ""}}},
	} {
		if _, err := NewServer(Config{Scan: c}); err == nil {
			t.Errorf("NewServer accepted %+v", c)
		}
	}
}
