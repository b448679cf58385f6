package egress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/internal/budget"
)

// Meter is the proxy's account of a run's model use, from the model API's
// own responses: the one the host trusts, since the agent cannot write it.
// The proxy rewrites it (atomically) after every model response and when a
// limit is reached.
type Meter struct {
	// ModelRequests counts the model requests (POST /v1/messages for Claude
	// Code) the proxy forwarded: the agent's turns, and also any side
	// request (titles, summaries) and retry. count_tokens is not one.
	ModelRequests            int     `json:"model_requests"`
	InputTokens              int     `json:"input_tokens"`
	OutputTokens             int     `json:"output_tokens"`
	CacheCreationInputTokens int     `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int     `json:"cache_read_input_tokens"`
	CostUSD                  float64 `json:"cost_usd"`
	// Refused counts model-API requests refused because a limit was spent.
	Refused int `json:"refused,omitempty"`

	// The limits the proxy enforces; zero means none.
	MaxCostUSD float64   `json:"max_cost_usd,omitempty"`
	MaxTurns   int       `json:"max_turns,omitempty"`
	Deadline   time.Time `json:"deadline,omitzero"`

	// Exhausted says why the proxy now refuses model requests (and, after
	// the deadline, all traffic), in the words the relay's budget uses:
	// "reached the cost limit of $0.50 ($0.5123 spent)" as soon as a
	// response takes the cost to the limit, "reached the timeout of 20s" at
	// the deadline, "reached max turns (3)" when a model request beyond the
	// last allowed one is refused. Empty while within budget.
	Exhausted   string    `json:"exhausted,omitempty"`
	ExhaustedAt time.Time `json:"exhausted_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// maxMeterFile bounds what ReadMeter reads; a real meter is a few hundred
// bytes.
const maxMeterFile = 64 << 10

// ReadMeter reads a meter file written by the proxy. The file lives in a
// directory only the proxy mounts, but it is still read as untrusted: no
// symlinks followed, nothing but a regular file, at most 64 KiB, and never a
// blocking open (a FIFO).
func ReadMeter(path string) (Meter, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return Meter{}, fmt.Errorf("read meter: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Meter{}, fmt.Errorf("read meter: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Meter{}, fmt.Errorf("read meter: %s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMeterFile+1))
	if err != nil {
		return Meter{}, fmt.Errorf("read meter %s: %w", path, err)
	}
	if len(data) > maxMeterFile {
		return Meter{}, fmt.Errorf("read meter: %s is larger than %d bytes", path, maxMeterFile)
	}
	var m Meter
	if err := json.Unmarshal(data, &m); err != nil {
		return Meter{}, fmt.Errorf("read meter %s: %w", path, err)
	}
	return m, nil
}

// writeMeter replaces the file at path with m, atomically.
func writeMeter(path string, m Meter) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".meter-*.tmp")
	if err != nil {
		return fmt.Errorf("write meter: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write meter: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write meter: %w", err)
	}
	return nil
}

// Budget is what the proxy lets a run spend; zero values mean no limit.
type Budget struct {
	MaxCostUSD float64
	MaxTurns   int
	// Deadline is when the run's time is up, on the host's clock. From then
	// on the proxy refuses all traffic and cuts what is open.
	Deadline time.Time
	// Timeout is the run's --timeout as the user wrote it ("20s"), for
	// messages only.
	Timeout string
}

// meter holds the running Meter and writes it to its file. Its methods are
// safe for concurrent use.
type meter struct {
	path   string // "" keeps the meter in memory only
	budget Budget
	now    func() time.Time
	// provider and region choose the price table (budget.ProviderPriceOf):
	// "" is Anthropic's.
	provider, region string

	mu sync.Mutex
	m  Meter
	// writeMu orders file writes, so an older snapshot never replaces a
	// newer one.
	writeMu sync.Mutex
}

func newMeter(path string, b Budget, now func() time.Time) *meter {
	return &meter{path: path, budget: b, now: now, m: Meter{
		MaxCostUSD: b.MaxCostUSD, MaxTurns: b.MaxTurns, Deadline: b.Deadline,
	}}
}

// snapshot returns the meter as it is now.
func (mt *meter) snapshot() Meter {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	return mt.m
}

// flush writes the current meter to its file. A write failing must not
// take the proxy down; the host then reads an older meter.
func (mt *meter) flush() {
	if mt.path == "" {
		return
	}
	mt.writeMu.Lock()
	defer mt.writeMu.Unlock()
	mt.mu.Lock()
	mt.m.UpdatedAt = mt.now().UTC()
	m := mt.m
	mt.mu.Unlock()
	_ = writeMeter(mt.path, m)
}

// exhaust records why the proxy now refuses, once; the caller holds mu.
func (mt *meter) exhaustLocked(reason string) {
	if mt.m.Exhausted == "" {
		mt.m.Exhausted = reason
		mt.m.ExhaustedAt = mt.now().UTC()
	}
}

func (mt *meter) deadlinePassed() bool {
	return !mt.budget.Deadline.IsZero() && !mt.now().Before(mt.budget.Deadline)
}

func (mt *meter) deadlineReason() string {
	if mt.budget.Timeout != "" {
		return "reached the timeout of " + mt.budget.Timeout
	}
	return "reached the deadline " + mt.budget.Deadline.UTC().Format(time.RFC3339)
}

// expire marks the deadline as reached and writes the meter.
func (mt *meter) expire() {
	mt.mu.Lock()
	mt.exhaustLocked(mt.deadlineReason())
	mt.mu.Unlock()
	mt.flush()
}

// admit decides whether a model-API request for route may go out, and
// counts it if so. It returns why not, or "".
func (mt *meter) admit(route APIRoute) string {
	mt.mu.Lock()
	reason := mt.admitLocked(route)
	if reason != "" {
		mt.m.Refused++
	}
	mt.mu.Unlock()
	if reason != "" {
		mt.flush()
	}
	return reason
}

func (mt *meter) admitLocked(route APIRoute) string {
	b := mt.budget
	switch {
	case mt.deadlinePassed():
		mt.exhaustLocked(mt.deadlineReason())
	case b.MaxCostUSD > 0 && mt.m.CostUSD >= b.MaxCostUSD:
		mt.exhaustLocked(mt.costReason())
	case mt.m.Exhausted != "":
	case route.Metered && !route.NoTurn && b.MaxTurns > 0 && mt.m.ModelRequests >= b.MaxTurns:
		mt.exhaustLocked(fmt.Sprintf("reached max turns (%d)", b.MaxTurns))
	default:
		if route.Metered && !route.NoTurn {
			mt.m.ModelRequests++
		}
		return ""
	}
	return mt.m.Exhausted
}

func (mt *meter) costReason() string {
	return fmt.Sprintf("reached the cost limit of $%.2f ($%.4f spent)", mt.budget.MaxCostUSD, mt.m.CostUSD)
}

// add folds usage (a delta) at the model's price into the meter. The
// moment the cost reaches the limit the meter is written, without waiting
// for the response to end, so the host learns of it at once.
func (mt *meter) add(model string, u budget.Usage) {
	mt.mu.Lock()
	mt.m.InputTokens += u.Input
	mt.m.OutputTokens += u.Output
	mt.m.CacheCreationInputTokens += u.CacheCreation
	mt.m.CacheReadInputTokens += u.CacheRead
	mt.m.CostUSD += budget.ProviderPriceOf(mt.provider, model, mt.region).Cost(u)
	spent := mt.budget.MaxCostUSD > 0 && mt.m.CostUSD >= mt.budget.MaxCostUSD && mt.m.Exhausted == ""
	if spent {
		mt.exhaustLocked(mt.costReason())
	}
	mt.mu.Unlock()
	if spent {
		mt.flush()
	}
}

// responseMeter reads the usage of one model response as it streams past
// and adds what it has not counted yet to the meter. Usage in the Messages
// API only grows within a response (message_delta's counts are
// cumulative), so the response's usage is the largest seen of each count.
type responseMeter struct {
	mt    *meter
	model string // as the response names it
	// pathModel is the model the request's path named (the route's "*"),
	// or "". It prices the response when the response names none, or
	// first when pathFirst is set.
	pathModel string
	pathFirst bool
	seen      budget.Usage // already added to the meter
}

// priceModel is the model the response is priced as.
func (rm *responseMeter) priceModel() string {
	if rm.pathModel != "" && (rm.pathFirst || rm.model == "") {
		return rm.pathModel
	}
	return rm.model
}

func (rm *responseMeter) observe(model string, u budget.Usage) {
	if model != "" && rm.model == "" {
		rm.model = model
	}
	d := budget.Usage{
		Input:         max(u.Input-rm.seen.Input, 0),
		Output:        max(u.Output-rm.seen.Output, 0),
		CacheCreation: max(u.CacheCreation-rm.seen.CacheCreation, 0),
		CacheRead:     max(u.CacheRead-rm.seen.CacheRead, 0),
	}
	if d == (budget.Usage{}) {
		return
	}
	rm.seen.Input += d.Input
	rm.seen.Output += d.Output
	rm.seen.CacheCreation += d.CacheCreation
	rm.seen.CacheRead += d.CacheRead
	rm.mt.add(rm.priceModel(), d)
}

// A usageFormat reads usage out of one wire format's model responses, so
// that the meter can follow each provider's API.
type usageFormat struct {
	// event reports whether an SSE event of this name can carry usage; its
	// data is not even kept otherwise. Unnamed events are always read.
	event func(name []byte) bool
	// data reads one SSE event's data, or a whole JSON response, and tells
	// rm what it found.
	data func(rm *responseMeter, data []byte)
	// request, if set, rewrites a metered request's body so that its
	// response reports its usage; an error refuses the request.
	request func(body []byte) ([]byte, error)
	// pathModelFirst prices a response by the model its request's path
	// names even when the response names one.
	pathModelFirst bool
}

// usageFormats are the wire formats the proxy meters, by the name an agent
// gives (agent.APIAuth.Usage).
func usageFormats(name string) (usageFormat, error) {
	switch name {
	case "anthropic", "":
		return anthropicUsage, nil
	case "openai-responses":
		return responsesUsageFormat, nil
	case "gemini":
		return geminiFormat, nil
	case "openai-chat":
		return chatCompletionsUsage, nil
	case "bedrock":
		return bedrockUsage, nil
	}
	return usageFormat{}, fmt.Errorf("unknown model API usage format %q", name)
}

// anthropicUsage is the Messages API's: message_start carries the input
// counts, message_delta the output so far; a JSON response carries both.
var anthropicUsage = usageFormat{
	event: func(name []byte) bool {
		return bytes.Equal(name, []byte("message_start")) || bytes.Equal(name, []byte("message_delta"))
	},
	data: func(rm *responseMeter, data []byte) {
		var ev anthropicEvent
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		switch ev.Type {
		case "message_start":
			if ev.Message.Usage != nil {
				rm.observe(ev.Message.Model, *ev.Message.Usage)
			} else if ev.Message.Model != "" {
				rm.model = ev.Message.Model
			}
		case "message_delta":
			if ev.Usage != nil {
				rm.observe("", *ev.Usage)
			}
		case "message", "":
			// A whole (non-streaming) response.
			if ev.Usage != nil {
				rm.observe(ev.Model, *ev.Usage)
			}
		}
	},
}

// anthropicEvent is the part of an SSE event's data, or of a whole JSON
// response, that carries usage.
type anthropicEvent struct {
	Type    string `json:"type"`
	Model   string `json:"model"` // a JSON (non-streaming) response
	Message struct {
		Model string        `json:"model"`
		Usage *budget.Usage `json:"usage"`
	} `json:"message"` // message_start
	Usage *budget.Usage `json:"usage"` // message_delta, or a JSON response
}

const (
	// maxSSELine bounds the event data kept for parsing; message_start and
	// message_delta are small, and long lines (text deltas) are never kept.
	maxSSELine = 256 << 10
	// longHead and longTail are what is kept of a longer data line: its
	// start (the event's type, the model) and its end (the usage of a
	// response that repeats its output before it).
	longHead = 4 << 10
	longTail = 64 << 10
	// maxJSONBody bounds a non-streaming response kept for its usage.
	maxJSONBody = 16 << 20
)

// sseScanner finds the events that carry usage in a stream fed to it in
// arbitrary pieces, without holding on to anything else.
type sseScanner struct {
	format usageFormat
	rm     *responseMeter
	line   []byte
	skip   bool // the current line is not kept
	// long: the current line outgrew maxSSELine; line holds its first
	// longHead bytes and tail (up to) its last longTail.
	long    bool
	tail    []byte
	decided bool // skip has been decided for the current line
	// other: the current event is named and cannot carry usage, so its
	// data is not kept. Unnamed events are parsed (their data says its
	// type).
	other bool
}

func (s *sseScanner) interesting() bool { return !s.other }

func (s *sseScanner) feed(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !s.skip {
			switch {
			case s.long:
				s.keepTail(chunk)
			case len(s.line)+len(chunk) > maxSSELine:
				s.line = append(s.line, chunk...)
				if !bytes.HasPrefix(s.line, []byte("data:")) || !s.interesting() {
					s.skip, s.line = true, s.line[:0]
					break
				}
				// Too long to keep whole: keep its head and its end. A
				// response that repeats its whole output (the Responses
				// API's response.completed) writes its usage at the end,
				// and an output the agent can make as long as it likes
				// must not go unmetered.
				s.long = true
				s.keepTail(s.line[longHead:])
				s.line = s.line[:longHead]
			default:
				s.line = append(s.line, chunk...)
				if !s.decided && len(s.line) >= 5 {
					s.decided = true
					if bytes.HasPrefix(s.line, []byte("data:")) && !s.interesting() {
						s.skip, s.line = true, s.line[:0]
					}
				}
			}
		}
		if i < 0 {
			return
		}
		b = b[i+1:]
		switch {
		case s.long:
			if len(s.tail) > longTail {
				s.tail = s.tail[len(s.tail)-longTail:]
			}
			s.handleLine(bytes.TrimSuffix(append(s.line, s.tail...), []byte("\r")))
		case !s.skip:
			s.handleLine(bytes.TrimSuffix(s.line, []byte("\r")))
		}
		s.line, s.skip, s.decided = s.line[:0], false, false
		s.long, s.tail = false, s.tail[:0]
	}
}

// keepTail appends p to the kept end of a long line, dropping what is
// more than longTail bytes from its end (in batches, to copy little).
func (s *sseScanner) keepTail(p []byte) {
	s.tail = append(s.tail, p...)
	if len(s.tail) > 2*longTail {
		n := copy(s.tail, s.tail[len(s.tail)-longTail:])
		s.tail = s.tail[:n]
	}
}

func (s *sseScanner) handleLine(line []byte) {
	switch {
	case len(line) == 0:
		s.other = false
	case bytes.HasPrefix(line, []byte("event:")):
		s.other = !s.format.event(bytes.TrimSpace(line[len("event:"):]))
	case bytes.HasPrefix(line, []byte("data:")):
		s.format.data(s.rm, bytes.TrimSpace(line[len("data:"):]))
	}
}

// meteredBody passes a model response through unchanged, feeding what it
// reads to the meter, and writes the meter file when the response ends
// (however it ends).
type meteredBody struct {
	io.ReadCloser
	feed   func([]byte)
	finish func()
	once   sync.Once
}

func (b *meteredBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.feed(p[:n])
	}
	if err != nil {
		b.once.Do(b.finish)
	}
	return n, err
}

func (b *meteredBody) Close() error {
	b.once.Do(b.finish)
	return b.ReadCloser.Close()
}

// meterBody wraps a model response's body: an event stream (Server-Sent
// Events, or AWS's binary event stream) is scanned as it passes; a JSON
// body is kept (up to a bound) and read at its end. pathModel is the model
// the request's path named, or "".
func (mt *meter) meterBody(body io.ReadCloser, contentType string, format usageFormat, pathModel string) io.ReadCloser {
	rm := &responseMeter{mt: mt, pathModel: pathModel, pathFirst: format.pathModelFirst}
	media, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(media)) {
	case "text/event-stream":
		sc := &sseScanner{rm: rm, format: format}
		return &meteredBody{ReadCloser: body, feed: sc.feed, finish: mt.flush}
	case eventStreamType:
		sc := newEventStreamScanner(rm, format)
		return &meteredBody{ReadCloser: body, feed: sc.feed, finish: mt.flush}
	}
	var buf bytes.Buffer
	over := false
	return &meteredBody{
		ReadCloser: body,
		feed: func(p []byte) {
			if over || buf.Len()+len(p) > maxJSONBody {
				over = true
				return
			}
			buf.Write(p)
		},
		finish: func() {
			if !over {
				format.data(rm, buf.Bytes())
			}
			mt.flush()
		},
	}
}

// pathModel is the model a route's "*" stands for in a request's raw path
// (matched by matchRoute), or "" for a route without one.
func pathModel(route APIRoute, rawPath string) string {
	prefix, suffix, wild := strings.Cut(route.Path, "*")
	if !wild || !pathMatches(route.Path, rawPath) {
		return ""
	}
	return rawPath[len(prefix) : len(rawPath)-len(suffix)]
}
