package egress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAuditLogRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	l := NewAuditLog(&buf)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Write(Record{Kind: KindConnect, Host: "api.example.com", Port: 443, Allowed: i%2 == 0, BytesUp: int64(i)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if !strings.Contains(buf.String(), `"bytes_up":`) || !strings.Contains(buf.String(), `"duration_ms":`) {
		t.Errorf("log lacks snake_case keys: %s", buf.String()[:200])
	}
	recs, err := ReadRecords(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 50 {
		t.Fatalf("read %d records, want 50", len(recs))
	}
	allowed := 0
	for _, r := range recs {
		if r.Time.IsZero() || time.Since(r.Time) > time.Minute {
			t.Errorf("record time %v not stamped", r.Time)
		}
		if r.Allowed {
			allowed++
		}
	}
	if allowed != 25 {
		t.Errorf("%d allowed records, want 25", allowed)
	}
	var nilLog *AuditLog
	if err := nilLog.Write(Record{}); err != nil {
		t.Errorf("nil log Write = %v", err)
	}
}

func TestReadRecordsTornAndBroken(t *testing.T) {
	good := `{"time":"2025-01-02T03:04:05Z","kind":"http","host":"a.example.com","allowed":true,"bytes_up":1,"bytes_down":2,"duration_ms":3}` + "\n"
	recs, err := ReadRecords(strings.NewReader(good + good + `{"time":"2025-01-02T03:0`))
	if err != nil || len(recs) != 2 {
		t.Fatalf("torn last line: %d records, %v; want 2, nil", len(recs), err)
	}
	if recs[0].Host != "a.example.com" || recs[0].BytesDown != 2 || recs[0].Kind != KindHTTP {
		t.Errorf("record = %+v", recs[0])
	}
	_, err = ReadRecords(strings.NewReader(good + "not json\n" + good))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("broken middle line: err = %v, want one naming line 2", err)
	}
}
