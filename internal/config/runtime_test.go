package config

import (
	"strings"
	"testing"
)

func TestRuntimeSetting(t *testing.T) {
	tests := []struct {
		name, file string // file: a project config's text; "" for none
		flag       string // --runtime's value; "" when not given
		want       string
		wantSource string // where the value came from; path stands for the file
		wantErr    string
	}{
		{name: "default", want: "", wantSource: "default"},
		{name: "file", file: "[sandbox]\nruntime = \"runsc\"\n", want: "runsc", wantSource: "path:2"},
		{name: "flag over file", file: "[sandbox]\nruntime = \"runsc\"\n", flag: "runc", want: "runc", wantSource: "flag --runtime"},
		{name: "odd name in a file", file: "[sandbox]\n\nruntime = \"runsc --debug\"\n", wantErr: `path:3: sandbox.runtime: "runsc --debug" is not a runtime name`},
		{name: "path as a name", flag: "/usr/bin/runsc", wantErr: `flag --runtime: sandbox.runtime: "/usr/bin/runsc" is not a runtime name`},
		{name: "not text", file: "[sandbox]\nruntime = 1\n", wantErr: "path:2: sandbox.runtime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l Loader
			path := ""
			if tt.file != "" {
				path = write(t, t.TempDir(), "config.toml", tt.file)
				l.ProjectPath = path
			}
			r, err := l.Load()
			if err == nil && tt.flag != "" {
				err = r.Set("sandbox.runtime", tt.flag, "flag --runtime")
			}
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "path", path)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("error = %v, want one containing %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Config.Sandbox.Runtime != tt.want {
				t.Errorf("runtime = %q, want %q", r.Config.Sandbox.Runtime, tt.want)
			}
			src := sourcesMap(r)["sandbox.runtime"]
			if want := strings.ReplaceAll(tt.wantSource, "path", path); src.From != want || src.Value != quote(tt.want) {
				t.Errorf("source = %+v, want %s from %s", src, quote(tt.want), want)
			}
		})
	}
}
