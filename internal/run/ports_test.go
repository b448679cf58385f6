package run

import (
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	tests := []struct {
		spec   string
		want   Port
		errHas string
	}{
		{spec: "3000", want: Port{3000, 3000}},
		{spec: "8080:3000", want: Port{8080, 3000}},
		{spec: "127.0.0.1:8080:3000", want: Port{8080, 3000}},
		{spec: "localhost:8080:3000", want: Port{8080, 3000}},
		{spec: "0.0.0.0:8080:3000", errHas: "loopback (127.0.0.1) only"},
		{spec: "192.168.1.2:8080:3000", errHas: "loopback (127.0.0.1) only"},
		{spec: "[::]:8080:3000", errHas: "write it as PORT"},
		{spec: "3128", errHas: "airlock's own relay"},
		{spec: "8080:3129", errHas: "airlock's own relay"},
		{spec: "0", errHas: "not a port number"},
		{spec: "70000", errHas: "not a port number"},
		{spec: "http", errHas: "not a port number"},
		{spec: "", errHas: "not a port number"},
	}
	for _, tt := range tests {
		got, err := ParsePort(tt.spec)
		switch {
		case tt.errHas != "":
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("ParsePort(%q) = %v, %v; want an error with %q", tt.spec, got, err, tt.errHas)
			}
		case err != nil || got != tt.want:
			t.Errorf("ParsePort(%q) = %v, %v; want %v", tt.spec, got, err, tt.want)
		default:
			if back, err := parseRecordedPort(got.String()); err != nil || back != got {
				t.Errorf("the record %q reads back as %v, %v", got.String(), back, err)
			}
		}
	}
	if err := checkPorts([]Port{{8080, 3000}, {8080, 3001}}); err == nil || !strings.Contains(err.Error(), "forwarded twice") {
		t.Errorf("one host port twice: %v", err)
	}
}
