package egress

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/budget"
)

// geminiStream is a streamGenerateContent?alt=sse response as the Gemini
// API sends it: CRLF-separated events, usage on every chunk, the
// candidates' count growing, the last chunk with finishReason.
const geminiStream = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"I'll \\\"usageMetadata\\\": {\\\"candidatesTokenCount\\\": 999999}\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 12000,\"candidatesTokenCount\": 3,\"cachedContentTokenCount\": 8000,\"totalTokenCount\": 12003,\"promptTokensDetails\": [{\"modality\": \"TEXT\",\"tokenCount\": 12000}]},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n" +
	"data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"run_shell_command\",\"args\": {\"command\": \"ls\"}},\"thoughtSignature\": \"c2ln\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 12000,\"candidatesTokenCount\": 40,\"cachedContentTokenCount\": 8000,\"thoughtsTokenCount\": 200,\"totalTokenCount\": 12240},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r1\"}\r\n\r\n"

func TestGeminiUsage(t *testing.T) {
	type obs struct {
		model string
		u     budget.Usage
	}
	tests := []struct {
		name string
		data string
		want []obs
	}{
		{"chunk", `{"usageMetadata":{"promptTokenCount":100,"candidatesTokenCount":5,"totalTokenCount":105},"modelVersion":"gemini-2.5-pro"}`,
			[]obs{{"gemini-2.5-pro", budget.Usage{Input: 100, Output: 5}}}},
		{"cached and thoughts", `{"usageMetadata":{"promptTokenCount":100,"cachedContentTokenCount":60,"candidatesTokenCount":5,"thoughtsTokenCount":7,"totalTokenCount":112},"modelVersion":"m"}`,
			[]obs{{"m", budget.Usage{Input: 40, CacheRead: 60, Output: 12}}}},
		{"tool-use prompt is input", `{"usageMetadata":{"promptTokenCount":100,"toolUsePromptTokenCount":30,"candidatesTokenCount":5,"totalTokenCount":135}}`,
			[]obs{{"", budget.Usage{Input: 130, Output: 5}}}},
		{"unexplained total is output", `{"usageMetadata":{"promptTokenCount":100,"candidatesTokenCount":5,"totalTokenCount":150}}`,
			[]obs{{"", budget.Usage{Input: 100, Output: 50}}}},
		{"cached beyond the prompt is capped", `{"usageMetadata":{"promptTokenCount":10,"cachedContentTokenCount":50,"totalTokenCount":10}}`,
			[]obs{{"", budget.Usage{CacheRead: 10}}}},
		{"negative counts count nothing", `{"usageMetadata":{"promptTokenCount":-10,"cachedContentTokenCount":-5,"candidatesTokenCount":-3}}`,
			[]obs{{"", budget.Usage{}}}},
		{"json array (stream without alt=sse)", `[{"usageMetadata":{"promptTokenCount":10,"totalTokenCount":10}},{"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":4,"totalTokenCount":14},"modelVersion":"g"}]`,
			[]obs{{"", budget.Usage{Input: 10}}, {"g", budget.Usage{Input: 10, Output: 4}}}},
		{"no usage", `{"candidates":[]}`, nil},
		{"not json", `{"usageMetadata":`, nil},
		{"empty", ``, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []obs
			geminiUsage([]byte(tt.data), func(m string, u budget.Usage) { got = append(got, obs{m, u}) })
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPathMatches(t *testing.T) {
	const stream = "/v1beta/models/*:streamGenerateContent"
	tests := []struct {
		pattern, raw string
		want         bool
	}{
		{stream, "/v1beta/models/gemini-2.5-flash:streamGenerateContent", true},
		{stream, "/v1beta/models/gemini-3.1-pro-preview-customtools:streamGenerateContent", true},
		{stream, "/v1beta/models/Gemini_2.5:streamGenerateContent", true},
		{stream, "/v1beta/models/:streamGenerateContent", false},
		{stream, "/v1beta/models/a/b:streamGenerateContent", false},
		{stream, "/v1beta/models/..:streamGenerateContent", false},
		{stream, "/v1beta/models/.x:streamGenerateContent", false},
		{stream, "/v1beta/models/-x:streamGenerateContent", false},
		{stream, "/v1beta/models/x:y:streamGenerateContent", false},
		{stream, "/v1beta/models/x%2f:streamGenerateContent", false},
		{stream, "/v1beta/models/x:generateContent", false},
		{stream, "/v1beta/models/x:streamGenerateContentX", false},
		{stream, "/v1beta/tunedModels/x:streamGenerateContent", false},
		{stream, "/v1beta/models/" + strings.Repeat("a", 129) + ":streamGenerateContent", false},
		{"/v1/messages", "/v1/messages", true},
		{"/v1/messages", "/v1/messages/", false},
	}
	for _, tt := range tests {
		if got := pathMatches(tt.pattern, tt.raw); got != tt.want {
			t.Errorf("pathMatches(%q, %q) = %v, want %v", tt.pattern, tt.raw, got, tt.want)
		}
	}
}

func TestCheckRoutesWildcard(t *testing.T) {
	ok := []APIRoute{{Method: "POST", Path: "/v1beta/models/*:streamGenerateContent"}}
	if err := checkRoutes(ok); err != nil {
		t.Errorf("checkRoutes(%v) = %v", ok, err)
	}
	for _, bad := range []string{"/v1beta/models/*/*:x", "/v1beta/*/../x", "v1beta/models/*"} {
		if err := checkRoutes([]APIRoute{{Method: "POST", Path: bad}}); err == nil {
			t.Errorf("checkRoutes accepted %q", bad)
		}
	}
}

func TestDropQueryCredentials(t *testing.T) {
	tests := []struct {
		raw, want string
		found     bool
	}{
		{"alt=sse", "alt=sse", false},
		{"", "", false},
		{"alt=sse&key=AIzaSECRET", "alt=sse", true},
		{"key=a&key=b", "", true},
		{"KEY=x&alt=sse", "alt=sse", true},
		{"%6Bey=x&alt=sse", "alt=sse", true},
		{"access_token=ya29&alt=sse", "alt=sse", true},
		{"oauth_token=t", "", true},
		{"keys=1&monkey=2", "keys=1&monkey=2", false},
	}
	for _, tt := range tests {
		u := &url.URL{Path: "/v1beta/models/m:streamGenerateContent", RawQuery: tt.raw}
		found := dropQueryCredentials(u)
		if found != tt.found || u.RawQuery != tt.want {
			t.Errorf("dropQueryCredentials(%q) = %v, query %q; want %v, %q", tt.raw, found, u.RawQuery, tt.found, tt.want)
		}
	}
}

// geminiRoutes are the Gemini CLI's, as agent.Gemini lists them.
var geminiRoutes = []APIRoute{
	{Method: "POST", Path: "/v1beta/models/*:streamGenerateContent", Metered: true},
	{Method: "POST", Path: "/v1beta/models/*:generateContent", Metered: true},
	{Method: "POST", Path: "/v1beta/models/*:countTokens"},
}

// A Gemini API request goes out with the real key in x-goog-api-key, and
// without any key the agent put in the query (where Google's API would
// read it too); paths outside the routes never reach the API.
func TestGeminiAPIForwarding(t *testing.T) {
	type seen struct{ key, auth, query, path string }
	var mu sync.Mutex
	var got []seen
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.Header.Get("X-Goog-Api-Key"), r.Header.Get("Authorization"), r.URL.RawQuery, r.URL.Path})
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, geminiStream)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	const real, placeholder = "AIza-real-key-for-test", "airlock-placeholder"
	p := startProxy(t, Config{API: &APIConfig{
		Upstream:    u,
		Headers:     map[string]string{"x-goog-api-key": real},
		Placeholder: placeholder,
		Routes:      geminiRoutes,
	}})
	send := func(target string, hdr string) *http.Response {
		c, err := net.Dial("tcp", apiAddr(p))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: 127.0.0.1:3129\r\n%sContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", target, hdr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	ok := []struct{ target, hdr, wantQuery string }{
		{"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "X-Goog-Api-Key: " + placeholder + "\r\n", "alt=sse"},
		{"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=AIza-smuggled", "X-Goog-Api-Key: " + placeholder + "\r\n", "alt=sse"},
		{"/v1beta/models/gemini-2.5-flash:generateContent?key=AIza-smuggled&access_token=ya29-smuggled", "X-Goog-Api-Key: AIza-other\r\nAuthorization: Bearer ya29-other\r\n", ""},
		{"/v1beta/models/gemini-2.5-flash:countTokens?%6bey=AIza-smuggled", "", ""},
	}
	for i, tt := range ok {
		resp := send(tt.target, tt.hdr)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != geminiStream {
			t.Fatalf("%s: status %d, body changed: %v", tt.target, resp.StatusCode, string(body) != geminiStream)
		}
		// The record is written once the response is done: wait for it,
		// so that records come in the order of the requests.
		p.records(t, i+1)
	}
	recs := p.records(t, len(ok))
	mu.Lock()
	for i, tt := range ok {
		s := got[i]
		if s.key != real || s.auth != "" || s.query != tt.wantQuery {
			t.Errorf("%s: upstream saw key %q auth %q query %q; want the real key only, query %q", tt.target, s.key, s.auth, s.query, tt.wantQuery)
		}
		if strings.Contains(s.query, "smuggled") {
			t.Errorf("%s: a smuggled key reached the API: %q", tt.target, s.query)
		}
	}
	mu.Unlock()
	for i := 1; i < len(ok); i++ {
		if !strings.Contains(recs[i].Reason, "credential in the query (dropped)") {
			t.Errorf("record %d reason %q, want the dropped query credential noted", i, recs[i].Reason)
		}
	}
	if !strings.Contains(recs[2].Reason, "credential other than the placeholder") {
		t.Errorf("record 2 reason %q, want the foreign header credential noted", recs[2].Reason)
	}

	for _, target := range []string{
		"/v1beta/models",
		"/v1beta/files?key=x",
		"/upload/v1beta/files",
		"/v1beta/models/gemini-2.5-flash:batchGenerateContent",
		"/v1beta/models/gemini-2.5-flash",
		"/v1beta/tunedModels/t:generateContent",
		"/v1beta/models/../files:generateContent",
		"/v1beta/cachedContents",
	} {
		if resp := send(target, ""); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", target, resp.StatusCode)
		}
	}
	mu.Lock()
	if len(got) != len(ok) {
		t.Errorf("upstream saw %d requests, want %d: %+v", len(got), len(ok), got)
	}
	mu.Unlock()
}

// The proxy meters a Gemini response from its usageMetadata, streamed in
// small pieces (lines split) or whole, at Gemini's prices.
func TestGeminiMeter(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, ":streamGenerateContent") {
			w.Header().Set("Content-Type", "text/event-stream")
			for s := geminiStream; len(s) > 0; {
				n := min(5, len(s))
				io.WriteString(w, s[:n])
				w.(http.Flusher).Flush()
				s = s[n:]
			}
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		io.WriteString(w, `{"candidates":[{"content":{"parts":[{"text":"{}"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1000,"candidatesTokenCount":10,"totalTokenCount":1010},"modelVersion":"gemini-2.5-pro"}`)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	p := startProxy(t, Config{MeterFile: meterFile, API: &APIConfig{
		Upstream: u, Headers: map[string]string{"x-goog-api-key": "k"}, Routes: geminiRoutes, Usage: "gemini",
	}})
	for _, target := range []string{
		"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
		"/v1beta/models/gemini-2.5-pro:generateContent",
		"/v1beta/models/gemini-2.5-pro:countTokens",
	} {
		resp := rawRequest(t, apiAddr(p), "POST "+target, `{}`)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", target, resp.StatusCode, body)
		}
		if strings.Contains(target, "stream") && string(body) != geminiStream {
			t.Fatalf("the stream was changed on its way")
		}
	}
	p.records(t, 3)
	m, err := ReadMeter(meterFile)
	if err != nil {
		t.Fatal(err)
	}
	// The stream: 12000 prompt of which 8000 cached, 40 candidates and
	// 200 thoughts at the end (the text's fake usage is ignored). The
	// router-like JSON answer: 1000 in, 10 out. countTokens is not metered.
	flash := budget.Usage{Input: 4000, CacheRead: 8000, Output: 240}
	pro := budget.Usage{Input: 1000, Output: 10}
	want := Meter{ModelRequests: 2, InputTokens: 5000, OutputTokens: 250, CacheReadInputTokens: 8000}
	got := m
	got.CostUSD, got.UpdatedAt = 0, time.Time{}
	if got != want {
		t.Errorf("meter = %+v\nwant    %+v", got, want)
	}
	cost := budget.PriceOf("gemini-2.5-flash").Cost(flash) + budget.PriceOf("gemini-2.5-pro").Cost(pro)
	if d := m.CostUSD - cost; d > 1e-12 || d < -1e-12 {
		t.Errorf("cost = %v, want %v", m.CostUSD, cost)
	}
}
