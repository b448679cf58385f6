package sandbox

import (
	"strings"
	"testing"
)

// The exit record is read back from the instance: anything but the init's
// own record must be refused, never read as an exit code.
func TestParseIncusExitRecord(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		code       int
		ok         bool
	}{
		{"valid", `{"code":3,"finished":"2026-11-26T16:00:00Z"}`, 3, true},
		{"signal", `{"code":143,"finished":"2026-11-26T16:00:00.5Z"}`, 143, true},
		{"empty", ``, 0, false},
		{"garbage", `exit 0`, 0, false},
		{"negative", `{"code":-1,"finished":"2026-11-26T16:00:00Z"}`, 0, false},
		{"too big", `{"code":256,"finished":"2026-11-26T16:00:00Z"}`, 0, false},
		{"no time", `{"code":0}`, 0, false},
		{"unknown field", `{"code":0,"finished":"2026-11-26T16:00:00Z","cost":0}`, 0, false},
		{"two objects", `{"code":0,"finished":"2026-11-26T16:00:00Z"}{"code":1,"finished":"2026-11-26T16:00:00Z"}`, 0, false},
		{"string code", `{"code":"0","finished":"2026-11-26T16:00:00Z"}`, 0, false},
		{"huge", `{"code":0,"finished":"2026-11-26T16:00:00Z"}` + strings.Repeat(" ", incusMaxRecord), 0, false},
	} {
		rec, err := parseIncusExitRecord([]byte(tc.data))
		if (err == nil) != tc.ok || tc.ok && rec.Code != tc.code {
			t.Errorf("%s: parse = %+v, %v; want code %d ok=%v", tc.name, rec, err, tc.code, tc.ok)
		}
	}
}
