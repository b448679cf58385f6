package egress

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// DefaultScanBodyKiB is how much of a request body is scanned unless
// configured otherwise ([egress] scan_body_kib).
const DefaultScanBodyKiB = 256

// scanBody reads up to limit bytes of r's body, puts them back in front of
// the rest, and scans them with the credential rules and the held secrets
// (not for entropy: bodies are full of random-looking data). A gzip or
// deflate body is decoded first, up to limit bytes of output, from the
// prefix read; a body in any other encoding cannot be inspected and is a
// hit of UninspectableRule (unless only held secrets are looked for).
func (s *Scanner) scanBody(r *http.Request, limit int64, heldOnly bool) (*Hit, error) {
	prefix, err := io.ReadAll(io.LimitReader(r.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	r.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(prefix), r.Body), closer: r.Body}
	text, ok := decodeBody(prefix, r.Header.Values("Content-Encoding"), limit)
	if !ok {
		if heldOnly {
			return nil, nil
		}
		return newHit(UninspectableRule, "body (Content-Encoding "+headerSafe(strings.Join(r.Header.Values("Content-Encoding"), ", "))+")"), nil
	}
	if rule, hit := s.scan(string(text), heldOnly); hit {
		return newHit(rule, "body"), nil
	}
	return nil, nil
}

type prefixedBody struct {
	io.Reader
	closer io.Closer
}

func (b *prefixedBody) Close() error { return b.closer.Close() }

// decodeBody undoes the content codings of a body prefix, up to limit
// bytes of output. A truncated stream (the prefix ends mid-body) yields
// what decoded; ok is false for an unknown coding or a stream that does not
// start as its coding says.
func decodeBody(prefix []byte, codings []string, limit int64) (text []byte, ok bool) {
	var list []string
	for _, c := range codings {
		for _, part := range strings.Split(c, ",") {
			if part = strings.ToLower(strings.TrimSpace(part)); part != "" && part != "identity" {
				list = append(list, part)
			}
		}
	}
	text = prefix
	// Codings are listed in the order applied; undo them last first.
	for i := len(list) - 1; i >= 0; i-- {
		var rd io.Reader
		var err error
		switch list[i] {
		case "gzip", "x-gzip":
			rd, err = gzip.NewReader(bytes.NewReader(text))
		case "deflate":
			// HTTP's deflate is zlib-wrapped; some clients send raw deflate.
			rd, err = zlib.NewReader(bytes.NewReader(text))
			if err != nil {
				rd, err = flate.NewReader(bytes.NewReader(text)), nil
			}
		default:
			return nil, false
		}
		if err != nil {
			return nil, false
		}
		out, err := io.ReadAll(io.LimitReader(rd, limit))
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && len(out) == 0 {
			return nil, false
		}
		text = out
	}
	return text, true
}
