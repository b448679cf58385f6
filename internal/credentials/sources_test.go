package credentials

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSourcesResolve(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", "npm_tok3n\n")
	two := write("two", "a\nb\n")
	big := write("big", strings.Repeat("x", maxSecret+1))
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	script := write("manager.sh", "#!/bin/sh\nif [ \"$1\" = read ]; then echo \"secret-from-$2\"; else echo \"vault: not signed in\" >&2; exit 3; fi\n")
	os.Chmod(script, 0o755)

	src := HostSources()
	src.LookupEnv = func(k string) (string, bool) {
		v, ok := map[string]string{"NPM_TOKEN": "env-value", "EMPTY": ""}[k]
		return v, ok
	}
	src.Timeout = 500 * time.Millisecond
	tests := []struct {
		source, want, wantErr string
	}{
		{"env:NPM_TOKEN", "env-value", ""},
		{"env:MISSING", "", "env:MISSING: the environment variable MISSING is not set"},
		{"env:EMPTY", "", "is not set"},
		{"file:" + token, "npm_tok3n", ""},
		{"file:" + filepath.Join(dir, "nope"), "", "no such file"},
		{"file:" + two, "", "more than one line"},
		{"file:" + big, "", "larger than 64 KiB"},
		{"file:" + fifo, "", "not a regular file"},
		{"cmd:" + script + " read npm", "secret-from-npm", ""},
		{"cmd:" + script + " write npm", "", "exit status 3; its standard error:\nvault: not signed in"},
		{"cmd:sleep 5", "", "did not finish within 500ms"},
		{"cmd:true", "", "the value is empty"},
		{"op:read", "", `unknown scheme "op"`},
		{"NPM_TOKEN", "", "has no scheme"},
		{"env:1BAD", "", "not an environment variable name"},
	}
	for _, tt := range tests {
		start := time.Now()
		got, err := src.Resolve(context.Background(), tt.source)
		if time.Since(start) > 3*time.Second {
			t.Errorf("%s: took %s", tt.source, time.Since(start))
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want one containing %q", tt.source, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s = %q, %v; want %q", tt.source, got, err, tt.want)
		}
	}
}
