package egress

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/budget"
)

// modelAPI is the model API stand-in: it records what reaches it and
// answers with body (JSON, or SSE when the request asks to stream).
type modelAPI struct {
	mu   sync.Mutex
	seen []string // "METHOD path?query"
	srv  *httptest.Server
}

func newModelAPI(t *testing.T, answer http.HandlerFunc) *modelAPI {
	t.Helper()
	m := &modelAPI{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.seen = append(m.seen, r.Method+" "+r.URL.RequestURI())
		m.mu.Unlock()
		if answer != nil {
			answer(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id":"msg_1","type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"output_tokens":5}}`)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *modelAPI) requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.seen...)
}

func (m *modelAPI) config(t *testing.T) *APIConfig {
	u, err := url.Parse(m.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &APIConfig{Upstream: u, Headers: map[string]string{"x-api-key": "real-key-123456"}}
}

// rawRequest sends one request with exactly this request line, so that no
// client library cleans the target first.
func rawRequest(t *testing.T, addr, requestLine, body string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: 127.0.0.1:3129\r\nX-Api-Key: placeholder\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", requestLine, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", requestLine, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func apiAddr(p *testProxy) string { return strings.TrimPrefix(p.apiURL, "http://") }

// apiError decodes an Anthropic-style error body.
func apiError(t *testing.T, resp *http.Response) (errType, msg string) {
	t.Helper()
	var body struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &body); err != nil || body.Type != "error" {
		t.Fatalf("body %q is not an API error: %v", data, err)
	}
	return body.Error.Type, body.Error.Message
}

// Only the agent API's own methods and paths reach the model API host with
// the real key; every other form is a 403 and an audit record, and the
// upstream never sees it.
func TestAPIRoutesRefused(t *testing.T) {
	tests := []struct {
		line   string
		reason string
	}{
		{"POST /v1/exfil", "/v1/exfil is not a model API path"},
		{"POST /v1/messages/", "/v1/messages/ is not a model API path"},
		{"POST //v1/messages", "//v1/messages is not a model API path"},
		{"POST /admin/keys?x=1", "/admin/keys is not a model API path"},
		{"GET /v1/../../admin/keys", ". or .. segment"},
		{"POST /v1/messages/../../admin", ". or .. segment"},
		{"POST /v1/./messages", ". or .. segment"},
		{"POST /v1/messages/..", ". or .. segment"},
		{"POST /v1/%2e%2e/%2e%2e/admin/keys", "percent-encoded dot, slash or backslash"},
		{"POST /v1/%2E%2E/admin", "percent-encoded dot, slash or backslash"},
		{"POST /v1%2fmessages", "percent-encoded dot, slash or backslash"},
		{"POST /v1%2Fmessages", "percent-encoded dot, slash or backslash"},
		{"POST /v1/messages%5c..%5cadmin", "percent-encoded dot, slash or backslash"},
		{"POST /v1/%6d%65ssages", "percent-encoded"},
		{"POST /v1\\messages", "backslash"},
		{"POST http://evil.example/x", "request target \"http://evil.example/x\" is not a path"},
		{"POST http://127.0.0.1:3129/v1/messages", "is not a path"},
		{"GET https://api.anthropic.com/v1/messages", "is not a path"},
		{"CONNECT api.anthropic.com:443", "is not a path"},
		{"GET /v1/messages", "method GET is not allowed on /v1/messages"},
		{"PUT /v1/messages?beta=true", "method PUT is not allowed on /v1/messages"},
		{"DELETE /v1/messages/count_tokens", "method DELETE is not allowed on /v1/messages/count_tokens"},
		{"GET /v1/models", "/v1/models is not a model API path"},
	}
	// (OPTIONS * never reaches a handler: net/http answers it itself.)
	up := newModelAPI(t, nil)
	p := startProxy(t, Config{API: up.config(t)})
	for i, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			resp := rawRequest(t, apiAddr(p), tt.line, `{"exfil":"data"}`)
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", resp.StatusCode)
			}
			if h := resp.Header.Get("X-Airlock-Denied"); !strings.Contains(h, tt.reason) {
				t.Errorf("X-Airlock-Denied = %q, want %q", h, tt.reason)
			}
			typ, msg := apiError(t, resp)
			if typ != "permission_error" || !strings.Contains(msg, tt.reason) || !strings.Contains(msg, "POST /v1/messages, POST /v1/messages/count_tokens") {
				t.Errorf("error %s %q, want permission_error naming %q and the allowed routes", typ, msg, tt.reason)
			}
			recs := p.records(t, i+1)
			r := recs[i]
			if r.Kind != KindAPI || r.Allowed || !strings.Contains(r.Reason, tt.reason) {
				t.Errorf("record = %+v", r)
			}
		})
	}
	if got := up.requests(); len(got) != 0 {
		t.Errorf("the model API received %v", got)
	}

	// The real routes still go through, with any query, exactly as asked.
	for _, line := range []string{"POST /v1/messages?beta=true", "POST /v1/messages/count_tokens?beta=true", "POST /v1/messages"} {
		if resp := rawRequest(t, apiAddr(p), line, `{}`); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", line, resp.StatusCode)
		}
	}
	want := []string{"POST /v1/messages?beta=true", "POST /v1/messages/count_tokens?beta=true", "POST /v1/messages"}
	if got := up.requests(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the model API received %q, want %q", got, want)
	}
	resp := rawRequest(t, apiAddr(p), "GET /healthz", "")
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" {
		t.Errorf("healthz = %d %q", resp.StatusCode, b)
	}
}

// sseResponse is a Messages API stream as the real API sends it (event
// names, ping, cumulative usage in message_delta).
const sseResponse = `event: message_start
data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":1000,"cache_read_input_tokens":20000,"output_tokens":2,"service_tier":"standard"}}}

event: ping
data: {"type": "ping"}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello, \"usage\":{\"output_tokens\":999999} is just text"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

`

// The proxy meters usage from streamed and plain JSON responses, counts
// only model requests as turns, and writes the meter file after each.
func TestMeter(t *testing.T) {
	chunk := 7 // deliver the stream in small pieces, splitting lines
	up := newModelAPI(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/messages/count_tokens":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"input_tokens":1234}`)
		case strings.Contains(r.URL.RawQuery, "stream"):
			w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
			for s := sseResponse; len(s) > 0; {
				n := min(chunk, len(s))
				io.WriteString(w, s[:n])
				w.(http.Flusher).Flush()
				s = s[n:]
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"msg_02","type":"message","role":"assistant","model":"claude-opus-4-1-20250805","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":100,"cache_creation_input_tokens":0,"cache_read_input_tokens":50,"output_tokens":20}}`)
		}
	})
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	p := startProxy(t, Config{API: up.config(t), MeterFile: meterFile})
	for _, line := range []string{"POST /v1/messages?stream", "POST /v1/messages/count_tokens", "POST /v1/messages?beta=true"} {
		resp := rawRequest(t, apiAddr(p), line, `{}`)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", line, resp.StatusCode, body)
		}
		if line == "POST /v1/messages?stream" && string(body) != sseResponse {
			t.Fatalf("the stream was changed on its way:\n%s", body)
		}
	}
	p.records(t, 3)
	m, err := ReadMeter(meterFile)
	if err != nil {
		t.Fatal(err)
	}
	sonnet := budget.PriceOf("claude-sonnet-4-5-20250929").Cost(budget.Usage{Input: 472, CacheCreation: 1000, CacheRead: 20000, Output: 89})
	opus := budget.PriceOf("claude-opus-4-1-20250805").Cost(budget.Usage{Input: 100, CacheRead: 50, Output: 20})
	want := Meter{ModelRequests: 2, InputTokens: 572, OutputTokens: 109, CacheCreationInputTokens: 1000, CacheReadInputTokens: 20050}
	got := m
	got.CostUSD, got.UpdatedAt = 0, time.Time{}
	if got != want {
		t.Errorf("meter = %+v\nwant    %+v", got, want)
	}
	if d := m.CostUSD - (sonnet + opus); d > 1e-12 || d < -1e-12 {
		t.Errorf("cost = %v, want %v", m.CostUSD, sonnet+opus)
	}
	if m.UpdatedAt.IsZero() || m.Exhausted != "" {
		t.Errorf("meter = %+v", m)
	}
}

// budgetProxy serves a model API whose every answer costs $0.30 (100k
// input tokens of Sonnet) under b.
func budgetProxy(t *testing.T, b Budget) (*testProxy, *modelAPI, string) {
	up := newModelAPI(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":100000,"output_tokens":0}}`)
	})
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	return startProxy(t, Config{API: up.config(t), MeterFile: meterFile, Budget: b}), up, meterFile
}

// Once a budget is spent the proxy refuses model requests with an API
// error the agent's CLI shows, and the meter says why.
func TestBudgetRefusals(t *testing.T) {
	tests := []struct {
		name      string
		budget    Budget
		forwarded int
		exhausted string
	}{
		{"max cost", Budget{MaxCostUSD: 0.5}, 2, "reached the cost limit of $0.50 ($0.6000 spent)"},
		{"max cost reached exactly", Budget{MaxCostUSD: 0.3}, 1, "reached the cost limit of $0.30 ($0.3000 spent)"},
		{"max turns", Budget{MaxTurns: 3}, 3, "reached max turns (3)"},
		{"deadline passed", Budget{Deadline: time.Now().Add(-time.Second), Timeout: "20s"}, 0, "reached the timeout of 20s"},
		{"no limit", Budget{}, 5, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, up, meterFile := budgetProxy(t, tt.budget)
			// count_tokens is no turn, and free.
			if resp := rawRequest(t, apiAddr(p), "POST /v1/messages/count_tokens", `{}`); tt.forwarded > 0 && resp.StatusCode != 200 {
				t.Fatalf("count_tokens: %d", resp.StatusCode)
			}
			for i := range 5 {
				resp := rawRequest(t, apiAddr(p), "POST /v1/messages?beta=true", `{}`)
				if i < tt.forwarded {
					if resp.StatusCode != 200 {
						t.Fatalf("request %d: status %d", i+1, resp.StatusCode)
					}
					io.ReadAll(resp.Body)
					continue
				}
				if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Should-Retry") != "false" {
					t.Fatalf("request %d: status %d, x-should-retry %q; want 429, false", i+1, resp.StatusCode, resp.Header.Get("X-Should-Retry"))
				}
				if typ, msg := apiError(t, resp); typ != "rate_limit_error" || !strings.Contains(msg, "budget is spent: "+tt.exhausted) {
					t.Errorf("request %d: error %s %q", i+1, typ, msg)
				}
			}
			n := 0
			for _, r := range up.requests() {
				if strings.HasPrefix(r, "POST /v1/messages?") {
					n++
				}
			}
			if n != tt.forwarded {
				t.Errorf("the model API received %d model requests, want %d", n, tt.forwarded)
			}
			recs := p.records(t, 6)
			denied := 0
			for _, r := range recs {
				if !r.Allowed {
					denied++
					if !strings.Contains(r.Reason, tt.exhausted) {
						t.Errorf("record reason %q", r.Reason)
					}
				}
			}
			wantDenied := 5 - tt.forwarded
			if tt.forwarded == 0 {
				wantDenied = 6 // count_tokens too: the run's time is up
			}
			if denied != wantDenied {
				t.Errorf("%d refusals logged, want %d", denied, wantDenied)
			}
			m, err := ReadMeter(meterFile)
			if err != nil {
				t.Fatal(err)
			}
			if m.Exhausted != tt.exhausted || (tt.exhausted != "") == m.ExhaustedAt.IsZero() || m.ModelRequests != tt.forwarded {
				t.Errorf("meter = %+v", m)
			}
		})
	}
}

// A stream in flight when the budget is spent finishes; the next request
// is refused. Concurrent requests cannot overdraw turns.
func TestBudgetTurnsConcurrent(t *testing.T) {
	p, up, _ := budgetProxy(t, Budget{MaxTurns: 4})
	var wg sync.WaitGroup
	codes := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", p.apiURL+"/v1/messages", strings.NewReader(`{}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		if c == 200 {
			ok++
		}
	}
	if ok != 4 || len(up.requests()) != 4 {
		t.Errorf("%d answered, upstream saw %d; want 4 of 20", ok, len(up.requests()))
	}
}

// At the deadline the proxy cuts an open tunnel and a model stream in
// flight, logs both, and refuses everything after.
func TestDeadlineCuts(t *testing.T) {
	echo := echoServer(t)
	release := make(chan struct{})
	defer close(release)
	up := newModelAPI(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	deadline := time.Now().Add(1500 * time.Millisecond)
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	p := startProxy(t, Config{
		Policy:    Policy{Allow: mustRules(t, echo), AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		API:       up.config(t),
		Budget:    Budget{Deadline: deadline, Timeout: "2s"},
		MeterFile: meterFile,
	})

	resp, c, br := rawConnect(t, p.proxyAddr, echo, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	fmt.Fprint(c, "ping\n")
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
	stream := rawRequest(t, apiAddr(p), "POST /v1/messages", `{"stream":true}`)
	sbr := bufio.NewReader(stream.Body)
	if l, err := sbr.ReadString('\n'); err != nil || l != "event: message_start\n" {
		t.Fatalf("stream: %q %v", l, err)
	}

	// Both stay open until the deadline, then end.
	tunnelEnd, streamEnd := make(chan time.Time, 1), make(chan time.Time, 1)
	go func() { io.Copy(io.Discard, br); tunnelEnd <- time.Now() }()
	go func() { io.Copy(io.Discard, sbr); streamEnd <- time.Now() }()
	for _, ch := range []chan time.Time{tunnelEnd, streamEnd} {
		select {
		case end := <-ch:
			if end.Before(deadline) {
				t.Errorf("cut %s before the deadline", deadline.Sub(end))
			}
			if end.Sub(deadline) > time.Second {
				t.Errorf("cut %s after the deadline", end.Sub(deadline))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("not cut at the deadline")
		}
	}

	// After it, every kind of traffic is refused.
	resp, _, _ = rawConnect(t, p.proxyAddr, echo, nil)
	assertDenied(t, resp, "the run's time is up (reached the timeout of 2s)")
	plain, err := p.client().Get("http://" + echo + "/x")
	if err != nil {
		t.Fatal(err)
	}
	assertDenied(t, plain, "the run's time is up")
	if r := rawRequest(t, apiAddr(p), "POST /v1/messages", `{}`); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("model request after the deadline: %d", r.StatusCode)
	}

	recs := p.records(t, 5)
	var cut, refused int
	for _, r := range recs {
		switch {
		case r.Allowed && strings.Contains(r.Reason, "cut at the deadline: reached the timeout of 2s"):
			cut++
		case !r.Allowed && strings.Contains(r.Reason, "reached the timeout of 2s"):
			refused++
		}
	}
	if cut != 2 || refused != 3 {
		t.Errorf("%d cut and %d refused records, want 2 and 3:\n%s", cut, refused, p.log.String())
	}
	m, err := ReadMeter(meterFile)
	if err != nil {
		t.Fatal(err)
	}
	if m.Exhausted != "reached the timeout of 2s" || m.ExhaustedAt.Before(deadline) || m.InputTokens != 10 {
		t.Errorf("meter = %+v", m)
	}
}

// The host reads the meter as it reads any file in a run directory: never
// through a link, never blocking on a FIFO, never unbounded.
func TestReadMeterRefusesNonFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "meter.json")
	if err := writeMeter(good, Meter{ModelRequests: 3, CostUSD: 0.25}); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadMeter(good); err != nil || m.ModelRequests != 3 || m.CostUSD != 0.25 {
		t.Fatalf("ReadMeter = %+v, %v", m, err)
	}
	link := filepath.Join(dir, "link.json")
	os.Symlink(good, link)
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.json")
	os.WriteFile(big, []byte(`{"model_requests":1,"x":"`+strings.Repeat("a", 70<<10)+`"}`), 0o600)
	for _, path := range []string{link, fifo, big, dir, filepath.Join(dir, "missing.json")} {
		done := make(chan error, 1)
		go func() { _, err := ReadMeter(path); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("ReadMeter(%s) accepted it", filepath.Base(path))
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("ReadMeter(%s) hangs", filepath.Base(path))
		}
	}
}

// Metering a stream costs a scan for newlines: text deltas are never
// copied or parsed.
func BenchmarkSSEMeter(b *testing.B) {
	delta := `event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"` + strings.Repeat("lorem ipsum ", 20) + `"}}

`
	stream := []byte(strings.Replace(sseResponse, "event: content_block_stop", strings.Repeat(delta, 500)+"event: content_block_stop", 1))
	mt := newMeter("", Budget{}, time.Now)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		sc := &sseScanner{rm: &responseMeter{mt: mt}, format: anthropicUsage}
		for p := stream; len(p) > 0; {
			n := min(4096, len(p))
			sc.feed(p[:n])
			p = p[n:]
		}
	}
}

// A hostile agent asks for a compressed response, which the meter could
// not read: the proxy drops the agent's Accept-Encoding, so whatever
// compression the upstream uses is the proxy's own to undo before the meter
// reads the usage, and the agent gets the response plain.
func TestMeterCompressedResponse(t *testing.T) {
	up := newModelAPI(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			io.WriteString(zw, sseResponse)
			zw.Close()
			return
		}
		io.WriteString(w, sseResponse)
	})
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	p := startProxy(t, Config{API: up.config(t), MeterFile: meterFile})
	req, _ := http.NewRequest("POST", p.apiURL+"/v1/messages", strings.NewReader("{}"))
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != sseResponse || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("the agent got %q (Content-Encoding %q), want the stream plain", body, resp.Header.Get("Content-Encoding"))
	}
	p.records(t, 1)
	m, err := ReadMeter(meterFile)
	if err != nil {
		t.Fatal(err)
	}
	if m.InputTokens != 472 || m.OutputTokens != 89 || m.CostUSD <= 0 {
		t.Errorf("meter = %+v, want the stream's usage", m)
	}
}
