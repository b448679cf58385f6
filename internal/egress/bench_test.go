package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"testing"
)

const benchChunk = 16 << 20

// sinkSource serves benchChunk bytes to every connection.
func sinkSource(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	buf := make([]byte, 256<<10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for sent := 0; sent < benchChunk; sent += len(buf) {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// relayedProxy runs the proxy on a Unix socket behind a relay, as in a run,
// and returns the relay's address.
func relayedProxy(b *testing.B, allow ...string) string {
	var rules []Rule
	for _, a := range allow {
		r, err := ParseRule(a, "bench")
		if err != nil {
			b.Fatal(err)
		}
		rules = append(rules, r)
	}
	srv, err := NewServer(Config{
		Policy:   Policy{Allow: rules, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Resolver: fakeResolver{"web.example.com": lo},
	})
	if err != nil {
		b.Fatal(err)
	}
	sock := b.TempDir() + "/p.sock"
	ul, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go srv.Serve(ctx, ul, nil)
	go Relay(ctx, rl, sock)
	return rl.Addr().String()
}

func download(b *testing.B, dial func() io.Reader) {
	b.SetBytes(benchChunk)
	for b.Loop() {
		n, err := io.Copy(io.Discard, dial())
		if err != nil || n != benchChunk {
			b.Fatalf("read %d bytes, %v", n, err)
		}
	}
}

func BenchmarkDownloadDirect(b *testing.B) {
	src := sinkSource(b)
	download(b, func() io.Reader {
		c, err := net.Dial("tcp", src)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	})
}

// BenchmarkDownloadTunnel goes relay -> Unix socket -> proxy -> upstream
// through a CONNECT tunnel (an IP-literal target, so no TLS is needed).
func BenchmarkDownloadTunnel(b *testing.B) {
	src := sinkSource(b)
	relay := relayedProxy(b, src)
	download(b, func() io.Reader {
		c, err := net.Dial("tcp", relay)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", src, src)
		br := bufio.NewReaderSize(c, 64<<10)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("CONNECT: %v %v", resp, err)
		}
		return br
	})
}

func smallRequests(b *testing.B, c *http.Client, u string) {
	for b.Loop() {
		resp, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func BenchmarkSmallRequestDirect(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer up.Close()
	smallRequests(b, up.Client(), up.URL)
}

// BenchmarkSmallRequestProxied sends plain-HTTP requests through relay and
// proxy; the difference to Direct is the added latency per request.
func BenchmarkSmallRequestProxied(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer up.Close()
	upPort := port(b, up.Listener.Addr().String())
	relay := relayedProxy(b, fmt.Sprintf("web.example.com:%d", upPort))
	pu, _ := url.Parse("http://" + relay)
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	smallRequests(b, c, fmt.Sprintf("http://web.example.com:%d/", upPort))
}
