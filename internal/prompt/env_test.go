package prompt

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	host := map[string]string{"TOKEN": "s3cret", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := host[k]; return v, ok }
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "host and explicit", in: []string{"TOKEN", "LEVEL=debug", "EMPTY"}, want: []string{"TOKEN=s3cret", "LEVEL=debug", "EMPTY="}},
		{name: "value with equals", in: []string{"Q=a=b"}, want: []string{"Q=a=b"}},
		{name: "last wins in first position", in: []string{"A=1", "B=2", "A=3"}, want: []string{"A=3", "B=2"}},
		{name: "none", in: nil, want: []string{}},
		{name: "unset", in: []string{"NOPE"}, wantErr: "environment variable NOPE is not set"},
		{name: "bad name", in: []string{"A-B=1"}, wantErr: `invalid environment entry "A-B=1"`},
		{name: "leading digit", in: []string{"1A"}, wantErr: "invalid environment entry"},
		{name: "empty name", in: []string{"=x"}, wantErr: "invalid environment entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEnv(tt.in, lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseEnv = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadEnvFile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{
			name: "dotenv features",
			in: "\uFEFF# comment\n\nA=1\r\nexport B = two words # note\nC=\"x \\\"y\\\"\\nz\" # c\n" +
				"D='lit\\n $HOME'\nE=\nF=a#b\n",
			want: []string{"A=1", "B=two words", "C=x \"y\"\nz", `D=lit\n $HOME`, "E=", "F=a#b"},
		},
		{name: "no equals", in: "A=1\nJUSTNAME\n", wantErr: `.env:2: expected NAME=value, got "JUSTNAME"`},
		{name: "bad name", in: "\n\nMY-VAR=1\n", wantErr: `.env:3: invalid variable name "MY-VAR"`},
		{name: "unterminated quote", in: "A=\"abc\n", wantErr: `.env:1: A: value has no closing "`},
		{name: "junk after quote", in: "A='x' y\n", wantErr: `.env:1: A: unexpected "y" after the closing quote`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".env")
			if err := os.WriteFile(path, []byte(tt.in), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadEnvFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), path) {
					t.Fatalf("error = %v, want %q prefixed by the path", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LoadEnvFile = %q, want %q", got, tt.want)
			}
		})
	}
}
