package image

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDetectMirror(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string // relative to the apt dir
		want    string
		wantErr string
	}{
		{
			name: "deb822 as on Debian 12",
			files: map[string]string{"sources.list.d/debian.sources": `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
`},
			want: "http://deb.debian.org/debian",
		},
		{
			name:  "one-line with options and trailing slash",
			files: map[string]string{"sources.list": "# local mirror\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib # fast\n"},
			want:  "http://mirror.example/debian",
		},
		{
			name: "sources.list read before sources.list.d",
			files: map[string]string{
				"sources.list":             "deb https://first.example/debian bookworm main\n",
				"sources.list.d/a.sources": "Types: deb\nURIs: http://second.example/debian\nSuites: bookworm\n",
			},
			want: "https://first.example/debian",
		},
		{
			name: "disabled entries, other suffixes and deb-src skipped",
			files: map[string]string{
				"sources.list.d/a.sources":                "Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\n",
				"sources.list.d/b.list.disabled-by-farm":  "deb http://gone.example/debian bookworm main\n",
				"sources.list.d/c.sources":                "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n",
				"sources.list.d/d.list":                   "deb https://deb.nodesource.com/node_20.x nodistro main\ndeb http://on.example/debian bookworm main\n",
				"sources.list.d/e.sources.disabled-by-me": "Types: deb\nURIs: http://also-gone.example/debian\nSuites: bookworm\n",
			},
			want: "http://on.example/debian",
		},
		{
			name: "bookworm preferred over an earlier other release",
			files: map[string]string{
				"sources.list.d/a.list": "deb http://security.debian.org/debian-security bookworm-security main\ndeb http://other.example/debian trixie main\n",
				"sources.list.d/b.list": "deb http://bookworm.example/debian bookworm main\n",
			},
			want: "http://bookworm.example/debian",
		},
		{
			name:  "another release's mirror when there is no bookworm",
			files: map[string]string{"sources.list.d/debian.sources": "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: trixie-security\n\nTypes: deb\nURIs:\n http://trixie.example/debian\nSuites: trixie trixie-updates\n"},
			want:  "http://trixie.example/debian",
		},
		{
			name:    "nothing usable",
			files:   map[string]string{"sources.list": "deb cdrom:[Debian 12]/ bookworm main\n"},
			wantErr: "no Debian release entry",
		},
		{
			name:    "no files at all",
			files:   map[string]string{},
			wantErr: "--mirror",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := DetectMirror(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DetectMirror = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("DetectMirror = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
