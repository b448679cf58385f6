package egress

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"

	"github.com/airlock-dev/airlock/internal/budget"
)

// esFrame encodes one event-stream frame with AWS's own encoder.
func esFrame(t testing.TB, headers map[string]string, payload []byte) []byte {
	t.Helper()
	var msg eventstream.Message
	for _, k := range []string{":event-type", ":exception-type", ":content-type", ":message-type"} {
		if v, ok := headers[k]; ok {
			msg.Headers.Set(k, eventstream.StringValue(v))
		}
	}
	msg.Payload = payload
	var b bytes.Buffer
	if err := eventstream.NewEncoder().Encode(&b, msg); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// chunk is a Bedrock chunk event carrying one Messages API streaming
// event, padded as Bedrock pads them.
func chunk(t testing.TB, event string) []byte {
	payload, _ := json.Marshal(map[string]string{
		"bytes": base64.StdEncoding.EncodeToString([]byte(event)),
		"p":     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
	})
	return esFrame(t, map[string]string{":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload)
}

func exceptionFrame(t testing.TB) []byte {
	return esFrame(t, map[string]string{":exception-type": "throttlingException", ":content-type": "application/json", ":message-type": "exception"},
		[]byte(`{"message":"Too many requests, please wait before trying again."}`))
}

const (
	bedrockStart = `{"type":"message_start","message":{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1200,"cache_creation_input_tokens":300,"cache_read_input_tokens":5000,"output_tokens":1}}}`
	// A text delta that quotes usage: text is never read as usage.
	bedrockText  = `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":999999}}"}}`
	bedrockDelta = `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":87}}`
	bedrockStop  = `{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":1200,"outputTokenCount":87,"invocationLatency":2134,"firstByteLatency":512,"cacheReadInputTokenCount":5000,"cacheWriteInputTokenCount":300}}`
)

// bedrockStream is a whole InvokeModelWithResponseStream answer, as Claude
// Code receives it for one turn.
func bedrockStream(t testing.TB) []byte {
	var b bytes.Buffer
	for _, ev := range []string{
		bedrockStart,
		`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		bedrockText,
		`{"type":"content_block_stop","index":0}`,
		bedrockDelta,
		bedrockStop,
	} {
		b.Write(chunk(t, ev))
	}
	return b.Bytes()
}

// meterBedrock passes body through a Bedrock meter in reads of the given
// sizes (the last repeated), checks it comes out unchanged, and returns
// the meter.
func meterBedrock(t *testing.T, provider, region, contentType, pathModel string, body []byte, sizes ...int) Meter {
	t.Helper()
	mt := newMeter("", Budget{}, time.Now)
	mt.provider, mt.region = provider, region
	r := mt.meterBody(io.NopCloser(&splitReader{data: body, sizes: sizes}), contentType, bedrockUsage, pathModel)
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !bytes.Equal(out, body) {
		t.Fatalf("the response was changed on its way")
	}
	return mt.snapshot()
}

// splitReader returns data in reads of the given sizes, the last repeated.
type splitReader struct {
	data  []byte
	sizes []int
}

func (s *splitReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	size := len(s.data)
	if len(s.sizes) > 0 {
		size = s.sizes[0]
		if len(s.sizes) > 1 {
			s.sizes = s.sizes[1:]
		}
	}
	n := min(max(size, 1), len(p), len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	return n, nil
}

// The usage of a Bedrock turn: 1200 input, 300 cache writes, 5000 cache
// reads, 87 output.
var bedrockTurn = Meter{InputTokens: 1200, CacheCreationInputTokens: 300, CacheReadInputTokens: 5000, OutputTokens: 87}

const (
	// Sonnet 4.5 on a regional (us.) profile: $3.30 in, $4.125 cache
	// write, $0.33 cache read, $16.50 out per million.
	bedrockTurnRegional = (1200*3.30 + 300*4.125 + 5000*0.33 + 87*16.50) / 1e6
	// ... and on the global profile, at the list price.
	bedrockTurnGlobal = (1200*3 + 300*3.75 + 5000*0.30 + 87*15) / 1e6
)

func tokens(m Meter) Meter {
	return Meter{InputTokens: m.InputTokens, OutputTokens: m.OutputTokens,
		CacheCreationInputTokens: m.CacheCreationInputTokens, CacheReadInputTokens: m.CacheReadInputTokens}
}

func TestBedrockEventStreamMeter(t *testing.T) {
	stream := bedrockStream(t)
	const us, global = "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
	big := chunk(t, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"`+strings.Repeat("x", maxEventFrame)+`"}}`)
	// A frame too big to keep that claims usage: it is not read.
	bigDelta := chunk(t, `{"type":"message_delta","usage":{"output_tokens":5000000},"delta":{"stop_reason":null,"pad":"`+strings.Repeat("y", maxEventFrame)+`"}}`)
	// A frame whose checksum is wrong: skipped, the next one read.
	corrupt := chunk(t, `{"type":"message_delta","usage":{"output_tokens":4000000}}`)
	corrupt[len(corrupt)-1] ^= 0xff
	// A prelude announcing a 4 GiB frame (its own checksum right): passed
	// through, nothing kept, the rest of the response unmetered.
	var huge [12]byte
	huge[0], huge[1], huge[2], huge[3] = 0xff, 0xff, 0xff, 0xf0
	crc := crc32.ChecksumIEEE(huge[:8])
	huge[8], huge[9], huge[10], huge[11] = byte(crc>>24), byte(crc>>16), byte(crc>>8), byte(crc)
	startOnly := chunk(t, bedrockStart)
	noModel := chunk(t, `{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","content":[],"usage":{"input_tokens":1200,"cache_creation_input_tokens":300,"cache_read_input_tokens":5000,"output_tokens":1}}}`)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	startTokens := Meter{InputTokens: 1200, CacheCreationInputTokens: 300, CacheReadInputTokens: 5000, OutputTokens: 1}
	startCost := (1200*3.30 + 300*4.125 + 5000*0.33 + 1*16.50) / 1e6

	tests := []struct {
		name        string
		contentType string
		path        string
		body        []byte
		want        Meter
		cost        float64
	}{
		{"stream, regional profile", eventStreamType, us, stream, bedrockTurn, bedrockTurnRegional},
		{"stream, global profile", eventStreamType, global, stream, bedrockTurn, bedrockTurnGlobal},
		{"content type with parameters", "Application/VND.Amazon.EventStream; charset=binary", global, stream, bedrockTurn, bedrockTurnGlobal},
		{"exception ends metering", eventStreamType, us,
			cat(startOnly, exceptionFrame(t), chunk(t, bedrockDelta)), startTokens, startCost},
		{"oversized frames skipped", eventStreamType, us,
			cat(startOnly, big, bigDelta, chunk(t, bedrockDelta), chunk(t, bedrockStop)), bedrockTurn, bedrockTurnRegional},
		{"corrupt frame skipped", eventStreamType, us,
			cat(startOnly, corrupt, chunk(t, bedrockDelta)), bedrockTurn, bedrockTurnRegional},
		{"garbage after frames", eventStreamType, us,
			cat(stream, []byte("HTTP/1.1 200 OK\r\n\r\n{\"usage\":{\"output_tokens\":777777}}"), chunk(t, `{"type":"message_delta","usage":{"output_tokens":888888}}`)),
			bedrockTurn, bedrockTurnRegional},
		{"4 GiB frame announced", eventStreamType, us,
			cat(startOnly, huge[:], chunk(t, bedrockDelta)), startTokens, startCost},
		{"truncated stream", eventStreamType, us, stream[:len(stream)-200], bedrockTurn, bedrockTurnRegional},
		{"model only in the path", eventStreamType, us,
			cat(noModel, chunk(t, bedrockDelta)), bedrockTurn, bedrockTurnRegional},
		{"no model anywhere: the dearest price", eventStreamType, "",
			cat(noModel, chunk(t, bedrockDelta)), bedrockTurn,
			budget.ProviderPriceOf("bedrock", "", "").Cost(budget.Usage{Input: 1200, CacheCreation: 300, CacheRead: 5000, Output: 87})},
		{"JSON invoke response", "application/json", "anthropic.claude-haiku-4-5-20251001-v1:0",
			[]byte(`{"id":"msg_bdrk_02","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"."}],"stop_reason":"max_tokens","usage":{"input_tokens":4000,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}`),
			Meter{InputTokens: 4000, OutputTokens: 1}, (4000*1.10 + 1*5.50) / 1e6},
		{"not an event stream", eventStreamType, us, []byte("<html>gateway error</html>"), Meter{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(how string, m Meter) {
				t.Helper()
				if got := tokens(m); got != tt.want {
					t.Errorf("%s: tokens %+v, want %+v", how, got, tt.want)
				}
				if math.Abs(m.CostUSD-tt.cost) > 1e-12 {
					t.Errorf("%s: cost %v, want %v", how, m.CostUSD, tt.cost)
				}
			}
			check("whole", meterBedrock(t, "bedrock", "us-east-1", tt.contentType, tt.path, tt.body))
			check("byte by byte", meterBedrock(t, "bedrock", "us-east-1", tt.contentType, tt.path, tt.body, 1))
			if testing.Short() || len(tt.body) > 4096 {
				return
			}
			// Split once at every byte: a frame's prelude, headers and
			// payload cut anywhere across two reads.
			for i := 1; i < len(tt.body); i++ {
				check(fmt.Sprintf("split at %d", i), meterBedrock(t, "bedrock", "us-east-1", tt.contentType, tt.path, tt.body, i, len(tt.body)))
			}
		})
	}
}

// The scanner keeps at most one frame no longer than maxEventFrame, however
// the upstream frames its stream.
func TestEventStreamScannerBounded(t *testing.T) {
	mt := newMeter("", Budget{}, time.Now)
	sc := newEventStreamScanner(&responseMeter{mt: mt}, bedrockUsage)
	for range 3 {
		sc.feed(chunk(t, `{"type":"content_block_delta","delta":{"text":"`+strings.Repeat("z", 4*maxEventFrame)+`"}}`))
	}
	sc.feed(chunk(t, bedrockStart))
	if cap(sc.frame) > 2*maxEventFrame || cap(sc.payload) > 2*maxEventFrame {
		t.Errorf("the scanner kept %d bytes of frame and %d of payload", cap(sc.frame), cap(sc.payload))
	}
	if m := mt.snapshot(); m.InputTokens != 1200 {
		t.Errorf("the frame after the big ones was not read: %+v", m)
	}
}

// Vertex answers streamRawPredict with the Messages API's own SSE stream;
// the "anthropic" format meters it, priced at Vertex's price for the region,
// by the model in the path when the response names none.
func TestVertexMeter(t *testing.T) {
	const stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_vrtx_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":1200,\"cache_creation_input_tokens\":300,\"cache_read_input_tokens\":5000,\"output_tokens\":1}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":87}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	withModel := strings.Replace(stream, `"role":"assistant",`, `"role":"assistant","model":"claude-opus-4-1-20250805",`, 1)
	tests := []struct {
		name, region, path, body string
		cost                     float64
	}{
		{"global, model from the path", "global", "claude-sonnet-4-5@20250929", stream, bedrockTurnGlobal},
		{"regional, model from the path", "us-east5", "claude-sonnet-4-5@20250929", stream, bedrockTurnRegional},
		{"the response's model first", "us-east5", "claude-sonnet-4-5@20250929", withModel,
			(1200*15 + 300*18.75 + 5000*1.50 + 87*75) / 1e6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mt := newMeter("", Budget{}, time.Now)
			mt.provider, mt.region = "vertex", tt.region
			r := mt.meterBody(io.NopCloser(&splitReader{data: []byte(tt.body), sizes: []int{3}}), "text/event-stream", anthropicUsage, tt.path)
			out, _ := io.ReadAll(r)
			r.Close()
			if string(out) != tt.body {
				t.Fatal("the stream was changed on its way")
			}
			m := mt.snapshot()
			if got := tokens(m); got != bedrockTurn {
				t.Errorf("tokens %+v, want %+v", got, bedrockTurn)
			}
			if math.Abs(m.CostUSD-tt.cost) > 1e-12 {
				t.Errorf("cost %v, want %v", m.CostUSD, tt.cost)
			}
		})
	}
}

func TestIsModelName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"us.anthropic.claude-sonnet-4-5-20250929-v1:0", true},
		{"global.anthropic.claude-opus-5-5", true},
		{"anthropic.claude-haiku-4-5-20251001-v1:0", true},
		{"apac.anthropic.claude-3-5-sonnet-20241022-v2:0", true},
		{"claude-sonnet-4-5@20250929", true},
		{"claude-3-5-sonnet-v2@20241022", true},
		{"claude-opus-5-5", true},
		{"gemini-2.5-flash", true},
		{"a", true},
		{strings.Repeat("a", 128), true},

		{"", false},
		{strings.Repeat("a", 129), false},
		{"..", false},
		{".", false},
		{"a/b", false},
		{"/", false},
		{"a%2Fb", false},
		{"%2e%2e", false},
		{":0", false},
		{"@20250929", false},
		{".anthropic.claude", false},
		{"-claude", false},
		{"claude:", false},
		{"claude:x", false},
		{"x:generateContent", false},
		{"claude-v1:0:invoke", false},
		{"claude@a@b", false},
		{"claude v1", false},
		{"claude\x00", false},
		{"claude?x=1", false},
		{"claude#x", false},
		{"claude\\x", false},
		{"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc", false},
		{"clau\u00dfde", false},
	}
	for _, tt := range tests {
		if got := isModelName(tt.name); got != tt.want {
			t.Errorf("isModelName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

var bedrockRoutes = []APIRoute{
	{Method: "POST", Path: "/model/*/invoke-with-response-stream", Metered: true},
	{Method: "POST", Path: "/model/*/invoke", Metered: true},
	{Method: "POST", Path: "/v1/projects/P/locations/R/publishers/anthropic/models/*:streamRawPredict", Metered: true},
}

func TestBedrockAndVertexPathMatches(t *testing.T) {
	tests := []struct {
		raw   string
		model string // "" when refused
	}{
		{"/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
		{"/model/global.anthropic.claude-opus-5-5/invoke", "global.anthropic.claude-opus-5-5"},
		{"/v1/projects/P/locations/R/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict", "claude-sonnet-4-5@20250929"},
		{"/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke", ""},
		{"/model/../invoke", ""},
		{"/model/a/../b/invoke", ""},
		{"/model//invoke", ""},
		{"/model/a/b/invoke", ""},
		{"/model/x%2Fy/invoke", ""},
		{"/model/x/invoke/", ""},
		{"/model/x/converse", ""},
		{"/model/x:1/invoke-with-response-stream/invoke", ""},
		{"/v1/projects/P/locations/R/publishers/anthropic/models/claude:rawPredict:streamRawPredict", ""},
		{"/v1/projects/Q/locations/R/publishers/anthropic/models/claude:streamRawPredict", ""},
		{"/model/" + strings.Repeat("a", 129) + "/invoke", ""},
	}
	for _, tt := range tests {
		route, _, refusal := matchRoute("POST", tt.raw, bedrockRoutes)
		got := ""
		if refusal == "" {
			got = pathModel(route, tt.raw)
		}
		if got != tt.model {
			t.Errorf("%s: model %q (refusal %q), want %q", tt.raw, got, refusal, tt.model)
		}
	}
}

// Through the proxy: Bedrock's streamed and plain answers reach the agent
// byte for byte, and the meter file holds their usage at Bedrock's price
// for the profile the path names.
func TestBedrockThroughProxy(t *testing.T) {
	stream := bedrockStream(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/invoke-with-response-stream") {
			w.Header().Set("Content-Type", eventStreamType)
			w.Header().Set("X-Amzn-Bedrock-Content-Type", "application/json")
			for s := stream; len(s) > 0; {
				n := min(11, len(s))
				w.Write(s[:n])
				w.(http.Flusher).Flush()
				s = s[n:]
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"msg_bdrk_02","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"."}],"stop_reason":"max_tokens","usage":{"input_tokens":4000,"output_tokens":1}}`)
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	meterFile := filepath.Join(t.TempDir(), "meter.json")
	p := startProxy(t, Config{MeterFile: meterFile, API: &APIConfig{
		Upstream: u, Headers: map[string]string{"X-Test": "1"}, Routes: bedrockRoutes,
		Usage: "bedrock", Provider: "bedrock", Region: "us-east-1",
	}})
	for _, target := range []string{
		"/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream",
		"/model/global.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream",
		"/model/anthropic.claude-haiku-4-5-20251001-v1:0/invoke",
	} {
		resp := rawRequest(t, apiAddr(p), "POST "+target, `{"anthropic_version":"bedrock-2023-05-31","max_tokens":1,"messages":[]}`)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", target, resp.StatusCode, body)
		}
		if strings.HasSuffix(target, "stream") {
			if !bytes.Equal(body, stream) {
				t.Fatalf("%s: the stream was changed on its way", target)
			}
			if ct := resp.Header.Get("Content-Type"); ct != eventStreamType {
				t.Errorf("content type %q", ct)
			}
		}
	}
	p.records(t, 3)
	m, err := ReadMeter(meterFile)
	if err != nil {
		t.Fatal(err)
	}
	want := Meter{ModelRequests: 3, InputTokens: 2*1200 + 4000, OutputTokens: 2*87 + 1,
		CacheCreationInputTokens: 600, CacheReadInputTokens: 10000}
	got := m
	got.CostUSD, got.UpdatedAt = 0, time.Time{}
	if got != want {
		t.Errorf("meter = %+v\nwant    %+v", got, want)
	}
	cost := bedrockTurnRegional + bedrockTurnGlobal + (4000*1.10+1*5.50)/1e6
	if math.Abs(m.CostUSD-cost) > 1e-12 {
		t.Errorf("cost = %v, want %v", m.CostUSD, cost)
	}
}

func TestNewServerRejectsUnknownProvider(t *testing.T) {
	u, _ := url.Parse("https://bedrock-runtime.us-east-1.amazonaws.com")
	_, err := NewServer(Config{API: &APIConfig{Upstream: u, Usage: "bedrock", Provider: "aws"}})
	if err == nil || !strings.Contains(err.Error(), `unknown model provider "aws"`) {
		t.Errorf("NewServer = %v, want the unknown provider refused", err)
	}
	if _, err := usageFormats("bedrock"); err != nil {
		t.Errorf("usageFormats(bedrock) = %v", err)
	}
}

// Whatever the upstream sends, the scanner neither panics nor keeps more
// than one bounded frame.
func FuzzEventStreamScanner(f *testing.F) {
	f.Add(bedrockStream(f), 7)
	f.Add(append(chunk(f, bedrockStart), exceptionFrame(f)...), 1)
	f.Add([]byte("\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 3)
	f.Fuzz(func(t *testing.T, data []byte, size int) {
		mt := newMeter("", Budget{}, time.Now)
		sc := newEventStreamScanner(&responseMeter{mt: mt, pathModel: "us.anthropic.claude-sonnet-4-5"}, bedrockUsage)
		r := &splitReader{data: data, sizes: []int{size%64 + 1}}
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			sc.feed(buf[:n])
			if err != nil {
				break
			}
		}
		if cap(sc.frame) > 2*maxEventFrame {
			t.Fatalf("kept %d bytes", cap(sc.frame))
		}
		if m := mt.snapshot(); m.InputTokens < 0 || m.OutputTokens < 0 || m.CostUSD < 0 {
			t.Fatalf("meter %+v", m)
		}
	})
}
