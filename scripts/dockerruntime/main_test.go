package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	runsc := map[string]any{"path": "/usr/bin/runsc", "runtimeArgs": []any{"--network=none", "--host-uds=open"}}
	tests := []struct {
		name, in string
		want     map[string]any // the output, decoded
		wantNote string         // on stderr
		wantErr  string
	}{
		{name: "no file", in: "", want: map[string]any{"runtimes": map[string]any{"runsc": runsc}}},
		{name: "other settings kept", in: `{"log-level": "warn", "runtimes": {"kata": {"path": "/k"}}}`,
			want: map[string]any{"log-level": "warn", "runtimes": map[string]any{"kata": map[string]any{"path": "/k"}, "runsc": runsc}}},
		{name: "already there", in: `{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none", "--host-uds=open"]}}}`,
			want: map[string]any{"runtimes": map[string]any{"runsc": runsc}}},
		{name: "the admin's own runsc", in: `{"runtimes": {"runsc": {"path": "/opt/runsc"}}}`,
			want: map[string]any{"runtimes": map[string]any{"runsc": map[string]any{"path": "/opt/runsc"}}}, wantNote: "left as it is"},
		{name: "not JSON", in: `{"runtimes": `, wantErr: "not a JSON object"},
		{name: "runtimes not an object", in: `{"runtimes": []}`, wantErr: `"runtimes" in daemon.json is not an object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run([]string{"runsc", "/usr/bin/runsc", "--network=none", "--host-uds=open"}, strings.NewReader(tt.in), &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if !strings.Contains(errOut.String(), tt.wantNote) || (tt.wantNote == "" && errOut.Len() > 0) {
				t.Errorf("stderr = %q, want %q", errOut.String(), tt.wantNote)
			}
		})
	}
}
