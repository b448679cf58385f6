package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// aptSource is one "deb" entry of an apt sources file.
type aptSource struct {
	uri    string
	suites []string
}

// DetectMirror returns the Debian mirror the host's apt already uses, read
// from aptDir/sources.list and aptDir/sources.list.d/*.{list,sources} (both
// the one-line and the deb822 format). Reusing it matters on machines that
// can reach only one mirror or proxy. A bookworm entry is preferred; else the
// first plain release suite (not -updates, not security) is taken, since
// debootstrap can fetch bookworm from any full Debian archive.
func DetectMirror(aptDir string) (string, error) {
	files := []string{filepath.Join(aptDir, "sources.list")}
	dropIns, err := os.ReadDir(filepath.Join(aptDir, "sources.list.d"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("detect apt mirror: %w", err)
	}
	var names []string
	for _, e := range dropIns {
		if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".list") || strings.HasSuffix(n, ".sources")) {
			names = append(names, n)
		}
	}
	sort.Strings(names) // apt's own order
	for _, n := range names {
		files = append(files, filepath.Join(aptDir, "sources.list.d", n))
	}

	var sources []aptSource
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("detect apt mirror: %w", err)
		}
		if strings.HasSuffix(f, ".sources") {
			sources = append(sources, parseDeb822(data)...)
		} else {
			sources = append(sources, parseOneLine(data)...)
		}
	}
	if src, ok := pickMirror(sources); ok {
		return src.uri, nil
	}
	return "", fmt.Errorf("detect apt mirror: no Debian release entry (\"deb URI bookworm main\") in %s or %s; "+
		"pass the mirror explicitly (e.g. --mirror http://deb.debian.org/debian)",
		filepath.Join(aptDir, "sources.list"), filepath.Join(aptDir, "sources.list.d"))
}

func pickMirror(sources []aptSource) (aptSource, bool) {
	usable := func(s aptSource) bool {
		for _, scheme := range []string{"http://", "https://", "ftp://", "file:/"} {
			if strings.HasPrefix(s.uri, scheme) {
				return true
			}
		}
		return false
	}
	for _, s := range sources {
		for _, suite := range s.suites {
			if usable(s) && suite == "bookworm" {
				return s, true
			}
		}
	}
	for _, s := range sources {
		for _, suite := range s.suites {
			if usable(s) && !strings.ContainsAny(suite, "-/") && !strings.Contains(s.uri, "security") {
				return s, true
			}
		}
	}
	return aptSource{}, false
}

// parseOneLine reads "deb [options] uri suite component..." lines.
func parseOneLine(data []byte) []aptSource {
	var out []aptSource
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "deb" {
			continue
		}
		rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "deb"))
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		fields = strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		out = append(out, aptSource{uri: strings.TrimSuffix(fields[0], "/"), suites: fields[1:2]})
	}
	return out
}

// parseDeb822 reads paragraphs of "Types:", "URIs:", "Suites:" and
// "Enabled:" fields; other fields are ignored.
func parseDeb822(data []byte) []aptSource {
	var out []aptSource
	fields := map[string]string{}
	var last string
	flush := func() {
		defer func() { fields, last = map[string]string{}, "" }()
		if len(fields) == 0 || strings.EqualFold(fields["enabled"], "no") || !hasWord(fields["types"], "deb") {
			return
		}
		for _, uri := range strings.Fields(fields["uris"]) {
			out = append(out, aptSource{uri: strings.TrimSuffix(uri, "/"), suites: strings.Fields(fields["suites"])})
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += " " + strings.TrimSpace(line)
			}
		default:
			key, val, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(key))
			fields[last] = strings.TrimSpace(val)
		}
	}
	flush()
	return out
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}
