package egress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// Record kinds.
const (
	KindConnect = "connect" // a CONNECT tunnel
	KindHTTP    = "http"    // a plain-HTTP request forwarded by the proxy
	KindAPI     = "api"     // a request through the model-API endpoint
)

// Record is one line of a run's egress log.
type Record struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Method  string    `json:"method,omitempty"`
	Host    string    `json:"host"`
	Port    int       `json:"port,omitempty"`
	Path    string    `json:"path,omitempty"` // without the query, which may carry data
	Addr    string    `json:"addr,omitempty"` // the address actually dialled
	Allowed bool      `json:"allowed"`
	Rule    string    `json:"rule,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	// Scan is a secret-scan hit let through because the host's scan mode
	// is "log": the rule and where, never the text.
	Scan       string `json:"scan,omitempty"`
	BytesUp    int64  `json:"bytes_up"`
	BytesDown  int64  `json:"bytes_down"`
	DurationMS int64  `json:"duration_ms"`
}

// AuditLog writes Records as JSON lines. It is safe for concurrent use; a
// nil *AuditLog discards records.
type AuditLog struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// NewAuditLog returns a log writing to w.
func NewAuditLog(w io.Writer) *AuditLog {
	return &AuditLog{w: w, now: time.Now}
}

// Write appends one record as a single write, stamping the time if unset.
func (l *AuditLog) Write(r Record) error {
	if l == nil {
		return nil
	}
	if r.Time.IsZero() {
		r.Time = l.now()
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode egress record: %w", err)
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(line); err != nil {
		return fmt.Errorf("write egress log: %w", err)
	}
	return nil
}

// ReadRecords parses an egress log. A last line without its newline that
// does not parse is a write in progress (or cut short by a crash) and is
// skipped; any other malformed line is an error naming its line number.
func ReadRecords(r io.Reader) ([]Record, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read egress log: %w", err)
	}
	var out []Record
	for n := 1; len(data) > 0; n++ {
		line, rest, complete := bytes.Cut(data, []byte("\n"))
		data = rest
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			if !complete {
				break
			}
			return out, fmt.Errorf("egress log line %d: %w", n, err)
		}
		out = append(out, rec)
	}
	return out, nil
}
