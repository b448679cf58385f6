package main

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

func gzipped(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestRecordSanitises(t *testing.T) {
	cases := []struct {
		name      string
		raw       string
		body      []byte
		want      string // the whole entry, or "" when nothing is recorded
		forbidden []string
	}{
		{"credentials dropped, case and order kept",
			"GET /ms HTTP/1.1\r\nuser-agent: npm/11\r\nAuthorization: Bearer npm_abc\r\nCookie: s=1\r\nProxy-Authorization: Basic eDp5\r\nnpm-otp: 123456\r\nHost: registry.npmjs.org\r\n\r\n",
			nil,
			"GET /ms HTTP/1.1\nuser-agent: npm/11\nHost: registry.npmjs.org\n",
			[]string{"npm_abc", "s=1", "eDp5", "123456"}},
		{"gzip body stored decoded, header kept, framing dropped",
			"POST /-/npm/v1/security/advisories/bulk HTTP/1.1\r\ncontent-encoding: gzip\r\nContent-Length: 40\r\nHost: registry.npmjs.org\r\n\r\n",
			gzipped(`{"ms":["2.1.3"]}`),
			"POST /-/npm/v1/security/advisories/bulk HTTP/1.1\ncontent-encoding: gzip\nHost: registry.npmjs.org\n\n{\"ms\":[\"2.1.3\"]}",
			nil},
		{"binary body not recorded",
			"POST /x HTTP/1.1\r\nHost: h\r\n\r\n", []byte{0, 1, 2}, "", nil},
		{"body holding the separator not recorded",
			"POST /x HTTP/1.1\r\nHost: h\r\n\r\n", []byte("a\n####\nb"), "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{o: options{maxShape: 10, maxBody: 1 << 10}, shapes: map[string]int{}, seen: map[string]bool{}}
			rec.record([]byte(c.raw), c.body)
			got := strings.Join(rec.entries, "####\n")
			if got != c.want {
				t.Errorf("entry:\n%q\nwant:\n%q", got, c.want)
			}
			for _, f := range c.forbidden {
				if strings.Contains(got, f) {
					t.Errorf("entry keeps %q", f)
				}
			}
		})
	}
}

func TestRecordCapsShapes(t *testing.T) {
	rec := &recorder{o: options{maxShape: 2, maxBody: 1 << 10}, shapes: map[string]int{}, seen: map[string]bool{}}
	for _, line := range []string{
		"GET /ms/-/ms-2.1.3.tgz HTTP/1.1",
		"GET /ms/-/ms-2.1.3.tgz HTTP/1.1", // exact repeat
		"GET /debug/-/debug-4.4.0.tgz HTTP/1.1",
		"GET /etag/-/etag-1.8.1.tgz HTTP/1.1", // third of its shape
		"GET /@types%2fnode HTTP/1.1",
		"GET /ms HTTP/1.1",
	} {
		rec.record([]byte(line+"\r\nHost: registry.npmjs.org\r\n\r\n"), nil)
	}
	if len(rec.entries) != 4 || rec.skipped != 2 {
		t.Errorf("kept %d, skipped %d; want 4 kept (2 tarballs, the scoped and the plain packument), 2 skipped:\n%s",
			len(rec.entries), rec.skipped, strings.Join(rec.entries, "####\n"))
	}
}

func TestShape(t *testing.T) {
	cases := []struct{ a, b string }{
		{"GET /golang.org/x/text/@v/v0.14.0.info HTTP/1.1", "GET /github.com/google/uuid/@v/v1.6.0.info HTTP/1.1"},
		{"GET http://deb.debian.org/debian/dists/bookworm/InRelease HTTP/1.1", "GET http://deb.debian.org/debian-security/dists/bookworm-security/InRelease HTTP/1.1"},
	}
	for _, c := range cases {
		if shape(c.a) != shape(c.b) {
			t.Errorf("shape(%q) = %q, shape(%q) = %q; want equal", c.a, shape(c.a), c.b, shape(c.b))
		}
	}
	if shape("GET /x/@v/v1.0.0.info HTTP/1.1") == shape("GET /x/@v/v1.0.0.zip HTTP/1.1") {
		t.Error(".info and .zip share a shape; want distinct")
	}
}
