// Command recordcorpus records the request lines, headers and bodies that
// real package managers send, for internal/egress/testdata/benign. It is a
// forward proxy: plain HTTP requests (APT) are logged and forwarded; CONNECT
// tunnels to the hosts named by -intercept are opened with a throw-away CA
// (name-constrained to those hosts, written to -ca and trusted by the client
// for the recording only), each decrypted request is logged and forwarded to
// the real host over TLS verified with the system roots. Other CONNECTs are
// refused.
//
// It is a one-time developer step, never a test: tests do not touch the
// internet. See internal/egress/testdata/benign/README.md for the commands.
//
//	go run ./scripts/recordcorpus -listen 127.0.0.1:3129 -ca /tmp/rec-ca.pem \
//	    -intercept registry.npmjs.org -out npm.recorded.http
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/egress"
)

// dropped are headers never written to the corpus: credentials (there
// should be none) and framing the corpus reader recomputes.
var dropped = map[string]bool{
	"authorization":       true,
	"proxy-authorization": true,
	"cookie":              true,
	"npm-otp":             true,
	"content-length":      true, // recomputed by the test from the body
	"transfer-encoding":   true, // the body is stored de-chunked
}

type options struct {
	listen    string
	caPath    string
	out       string
	intercept []string
	maxShape  int
	maxBody   int
}

func main() {
	var o options
	var hosts string
	flag.StringVar(&o.listen, "listen", "127.0.0.1:3129", "proxy address")
	flag.StringVar(&o.caPath, "ca", "", "where to write the throw-away CA certificate (PEM)")
	flag.StringVar(&o.out, "out", "", "corpus file to write (overwritten)")
	flag.StringVar(&hosts, "intercept", "", "comma-separated hosts whose CONNECT tunnels are decrypted and recorded")
	flag.IntVar(&o.maxShape, "max-per-shape", 12, "keep at most this many requests of one shape (method, host, path keywords, extension)")
	flag.IntVar(&o.maxBody, "max-body", 64<<10, "drop requests whose (decoded) body is larger")
	flag.Parse()
	if o.out == "" || o.caPath == "" || hosts == "" {
		log.Fatal("recordcorpus: -out, -ca and -intercept are required")
	}
	o.intercept = strings.Split(hosts, ",")
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

type recorder struct {
	o       options
	issuer  *egress.LeafIssuer
	tr      *http.Transport
	mu      sync.Mutex
	entries []string
	shapes  map[string]int
	seen    map[string]bool
	skipped int
}

func run(o options) error {
	ca, err := egress.NewCA("recordcorpus throw-away CA", o.intercept, time.Now().Add(24*time.Hour))
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.caPath, []byte(ca.Cert), 0o644); err != nil {
		return fmt.Errorf("recordcorpus: %w", err)
	}
	is, err := egress.NewLeafIssuer(ca)
	if err != nil {
		return err
	}
	rec := &recorder{
		o:      o,
		issuer: is,
		// No proxy: the recorder itself is the proxy, and it must reach
		// the real host. System roots verify it.
		tr:     &http.Transport{Proxy: nil, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 8},
		shapes: map[string]int{},
		seen:   map[string]bool{},
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("recordcorpus: %w", err)
	}
	log.Printf("recordcorpus: proxy on %s, CA in %s, intercepting %v", ln.Addr(), o.caPath, o.intercept)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go rec.serve(c)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	<-sig
	ln.Close()
	return rec.write()
}

func (rec *recorder) write() error {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	data := strings.Join(rec.entries, "####\n")
	if err := os.WriteFile(rec.o.out, []byte(data), 0o644); err != nil {
		return fmt.Errorf("recordcorpus: %w", err)
	}
	log.Printf("recordcorpus: wrote %d requests to %s (%d near-duplicates skipped)", len(rec.entries), rec.o.out, rec.skipped)
	return nil
}

// serve handles one client connection to the proxy.
func (rec *recorder) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		raw, req, err := readRequest(br)
		if err != nil {
			return
		}
		if req.Method == http.MethodConnect {
			rec.record(raw, nil)
			rec.tunnel(c, br, req)
			return
		}
		if req.URL.Scheme != "http" {
			return
		}
		if !rec.forward(c, raw, req, "http", req.URL.Host) {
			return
		}
	}
}

// tunnel decrypts a CONNECT tunnel to an intercepted host.
func (rec *recorder) tunnel(c net.Conn, br *bufio.Reader, req *http.Request) {
	host, _, err := net.SplitHostPort(req.Host)
	if err != nil || !rec.intercepted(host) {
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		log.Printf("recordcorpus: refused CONNECT %s", req.Host)
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		return
	}
	leaf, err := rec.issuer.Leaf(host)
	if err != nil {
		log.Print(err)
		return
	}
	tc := tls.Server(&bufConn{Conn: c, r: br}, &tls.Config{Certificates: []tls.Certificate{*leaf}, NextProtos: []string{"http/1.1"}})
	defer tc.Close()
	tbr := bufio.NewReader(tc)
	for {
		raw, r, err := readRequest(tbr)
		if err != nil {
			return
		}
		if !rec.forward(tc, raw, r, "https", req.Host) {
			return
		}
	}
}

func (rec *recorder) intercepted(host string) bool {
	for _, h := range rec.o.intercept {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// forward records a request, sends it to the real host and copies the
// response back. It reports whether the connection can carry another.
func (rec *recorder) forward(w io.Writer, raw []byte, req *http.Request, scheme, authority string) bool {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return false
	}
	rec.record(raw, body)
	out := req.Clone(req.Context())
	out.RequestURI = ""
	out.URL.Scheme = scheme
	out.URL.Host = authority
	if out.Host == "" {
		out.Host = authority
	}
	out.Header.Del("Proxy-Connection")
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	if len(body) == 0 {
		out.Body = nil
	}
	resp, err := rec.tr.RoundTrip(out)
	if err != nil {
		log.Printf("recordcorpus: %s %s: %v", req.Method, out.URL, err)
		io.WriteString(w, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return false
	}
	defer resp.Body.Close()
	if err := resp.Write(w); err != nil {
		return false
	}
	return !req.Close && !resp.Close
}

// readRequest reads one request head as sent (header names' case and
// order kept), parses it, and attaches the body reader.
func readRequest(br *bufio.Reader) ([]byte, *http.Request, error) {
	var head bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, nil, err
		}
		head.WriteString(line)
		if line == "\r\n" || line == "\n" {
			break
		}
		if head.Len() > 1<<20 {
			return nil, nil, errors.New("recordcorpus: request head too large")
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head.Bytes())))
	if err != nil {
		return nil, nil, err
	}
	switch {
	case len(req.TransferEncoding) > 0:
		req.Body = io.NopCloser(httputil.NewChunkedReader(br))
	case req.ContentLength > 0:
		req.Body = io.NopCloser(io.LimitReader(br, req.ContentLength))
	default:
		req.Body = http.NoBody
	}
	return head.Bytes(), req, nil
}

// record turns a request into a corpus entry: the head as sent minus the
// dropped headers, then the body, stored gunzipped if it was gzip-encoded
// so the corpus stays text (the corpus reader compresses it again).
func (rec *recorder) record(raw, body []byte) {
	var lines []string
	gzipped := false
	for i, line := range strings.Split(strings.TrimRight(string(raw), "\r\n"), "\n") {
		line = strings.TrimRight(line, "\r")
		if i > 0 {
			name, value, _ := strings.Cut(line, ":")
			n := strings.ToLower(strings.TrimSpace(name))
			if dropped[n] {
				continue
			}
			if n == "content-encoding" && strings.EqualFold(strings.TrimSpace(value), "gzip") && len(body) > 0 {
				gzipped = true // kept: the corpus reader gzips the body again
			}
		}
		lines = append(lines, line)
	}
	if gzipped {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(zr, int64(rec.o.maxBody)+1))
		}
		if err != nil {
			log.Printf("recordcorpus: %s: undecodable gzip body, not recorded", lines[0])
			return
		}
	}
	entry := strings.Join(lines, "\n") + "\n"
	if len(body) > 0 {
		if len(body) > rec.o.maxBody || bytes.Contains(body, []byte("####\n")) || !isText(body) {
			log.Printf("recordcorpus: %s: body not storable as text, not recorded", lines[0])
			return
		}
		entry += "\n" + string(body)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	k := shape(lines[0])
	if rec.seen[entry] || rec.shapes[k] >= rec.o.maxShape {
		rec.skipped++
		return
	}
	rec.seen[entry] = true
	rec.shapes[k]++
	rec.entries = append(rec.entries, entry)
	log.Printf("recordcorpus: %s", lines[0])
}

func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

// keywords are path segments that say what kind of request it is; every
// other segment (names, versions, hashes) is a wildcard in its shape.
var keywords = map[string]bool{
	"-": true, "@v": true, "@latest": true, "dists": true, "pool": true, "by-hash": true,
	"lookup": true, "tile": true, "latest": true, "security": true, "advisories": true,
	"bulk": true, "audits": true, "quick": true, "InRelease": true, "Release": true,
	"main": true, "binary-amd64": true, "i18n": true, "cnf": true, "dep11": true,
}

// shape is the request line with names, versions and hashes wildcarded:
// requests of one shape are near-identical for the scanner.
func shape(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	target := f[1]
	if i := strings.Index(target, "://"); i >= 0 {
		target = target[i+3:]
		if j := strings.IndexByte(target, '/'); j >= 0 {
			target = target[j:]
		}
	}
	path, query, _ := strings.Cut(target, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if keywords[s] {
			continue
		}
		if strings.HasPrefix(s, "@") { // npm scopes, encoded or not
			segs[i] = "@*"
			continue
		}
		ext := ""
		if i == len(segs)-1 {
			if j := strings.LastIndexByte(s, '.'); j > 0 {
				ext = s[j:]
			}
		}
		segs[i] = "*" + ext
	}
	if query != "" {
		query = "?q"
	}
	return f[0] + " " + strings.Join(segs, "/") + query
}

// bufConn reads through the proxy connection's buffered reader, which may
// already hold the start of the TLS handshake.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }
