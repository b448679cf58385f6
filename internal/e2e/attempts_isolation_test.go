package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/egress"
)

// attempt is one try at getting out of the sandbox. Its script is shell run
// by attemptsScript inside the agent's container; its last output line is
// the verdict: "ok" (it got through), "denied" (the proxy answered 403 with
// X-Airlock-Denied) or "failed" (anything else), then details.
type attempt struct {
	name   string
	script string
	want   string // "ok" for controls; "denied" or "failed" for escapes; "blocked" for either
	// host and reason, when reason is set, name the audit record the proxy
	// must have written: allowed for a control, denied otherwise (host ""
	// matches any host, for hosts the proxy redacts).
	host, reason string
	// noDial: the proxy must have refused before connecting anywhere (the
	// record has no address).
	noDial bool
}

// isoPy makes the attempts curl cannot: raw sockets, hand-written CONNECT
// and TLS with a chosen SNI. `python3 iso.py FUNC ARGS...` prints one
// verdict line.
const isoPy = `import socket, ssl, struct, sys

def verdict(v, detail=''):
    print(v, ' '.join(str(detail).split())[:400])

def tcp(host, port):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b'GET / HTTP/1.0\r\n\r\n')
    return s.recv(200)

def tcp6(host, port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((host, int(port), 0, 0))
    return 'connected'

def udp(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return 'sent %d bytes' % s.sendto(b'airlock-e2e-udp', (host, int(port)))

ECHO = struct.pack('!BBHHH', 8, 0, 0, 1, 1) + b'airlock'

def icmp(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    return 'echo request sent: %d' % s.sendto(ECHO, (host, 0))

def raw(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    return 'raw packet sent: %d' % s.sendto(ECHO, (host, 0))

def packet():
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    return 'packet socket open'

def dns(name):
    return socket.getaddrinfo(name, 443)

def dnsq(server):
    q = struct.pack('!HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + b'\x05exfil\x04test\x00' + struct.pack('!HH', 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return 'query sent: %d' % s.sendto(q, (server, 53))

def tunnel(target):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=5)
    s.sendall(b'CONNECT ' + target.encode('latin-1') + b' HTTP/1.1\r\nHost: x\r\n\r\n')
    head = b''
    while b'\r\n\r\n' not in head:
        c = s.recv(1)
        if not c:
            raise ConnectionError('proxy closed the connection before answering CONNECT')
        head += c
    head = head.decode('latin-1')
    if 'x-airlock-denied' in head.lower():
        verdict('denied', head)
        sys.exit(0)
    if ' 200 ' not in head.split('\r\n')[0] + ' ':
        raise ConnectionError(head)
    return s

def connect(target):
    tunnel(target)
    return 'tunnel open'

def sni(target, name):
    s = tunnel(target)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(s, server_hostname=name or None)
    t.sendall(b'GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n')
    return t.recv(300)

def plain(target):
    s = tunnel(target)
    s.sendall(b'GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n')
    data = s.recv(300)
    if not data:
        raise ConnectionError('closed by the proxy')
    return data

try:
    verdict('ok', globals()[sys.argv[1]](*sys.argv[2:]))
except Exception as e:
    verdict('failed', '%s: %s' % (type(e).__name__, e))
`

// attemptsPreamble defines the helpers the attempts' shell uses.
const attemptsPreamble = `cd "$(dirname "$0")"
PROXY=http://127.0.0.1:3128
verdict() { printf '%s %s\n' "$1" "$(printf '%s' "$2" | tr '\n\t\r' '   ' | cut -c1-400)"; }
# fetch URL [curl options]: through the proxy.
fetch() {
	url=$1; shift
	hdr=$(mktemp); body=$(mktemp)
	codes=$(curl -sS -m 10 --cacert ca.pem -x "$PROXY" --noproxy '' -D "$hdr" -o "$body" -w '%{http_connect} %{http_code}' "$@" "$url" 2>&1)
	rc=$?
	den=$(grep -i '^x-airlock-denied:' "$hdr" | head -n 1 | tr -d '\r')
	if [ -n "$den" ]; then verdict denied "$codes $den"
	elif [ $rc -eq 0 ] && grep -q upstream-ok "$body"; then verdict ok "$codes $(head -c 200 "$body")"
	else verdict failed "rc=$rc $codes $(head -c 200 "$body")"; fi
	rm -f "$hdr" "$body"
}
# direct CMD...: ok when the command succeeds.
direct() { out=$("$@" 2>&1); rc=$?; if [ $rc -eq 0 ]; then verdict ok "$out"; else verdict failed "rc=$rc $out"; fi; }
py() { python3 iso.py "$@"; }
attempt() {
	out=$("$2" 2>&1 | tail -n 1)
	[ -n "$out" ] || out="failed (no output)"
	printf 'RESULT\t%s\t%s\n' "$1" "$out"
}
`

// attemptsScript is the shell that makes every attempt in order, printing
// "RESULT\t<index>\t<verdict> <detail>" for each. vars replaces {NAME}
// placeholders in the scripts.
func attemptsScript(attempts []attempt, vars *strings.Replacer) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n" + attemptsPreamble)
	for i, a := range attempts {
		fmt.Fprintf(&b, "a%d() {\n%s\n}\nattempt %d a%d\n", i, vars.Replace(a.script), i, i)
	}
	return b.String()
}

type verdict struct{ outcome, detail string }

// readVerdicts parses a results file; a missing file is an empty map, so
// every attempt then fails with what the file did say.
func readVerdicts(t *testing.T, path string) (map[int]verdict, string) {
	t.Helper()
	data, _ := os.ReadFile(path)
	out := map[int]verdict{}
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "RESULT\t")
		if !ok {
			continue
		}
		idx, v, _ := strings.Cut(rest, "\t")
		n, err := strconv.Atoi(idx)
		if err != nil {
			continue
		}
		outcome, detail, _ := strings.Cut(v, " ")
		out[n] = verdict{outcome, detail}
	}
	return out, string(data)
}

// checkAttempts asserts every attempt's verdict and audit record, one
// subtest each.
func checkAttempts(t *testing.T, attempts []attempt, vars *strings.Replacer, results string, recs []egress.Record) {
	t.Helper()
	got, raw := readVerdicts(t, results)
	if len(got) == 0 {
		t.Fatalf("no results from inside the sandbox; %s says:\n%s", results, tail(raw, 40))
	}
	for i, a := range attempts {
		t.Run(a.name, func(t *testing.T) {
			v, ok := got[i]
			switch {
			case !ok:
				t.Fatalf("no verdict; the results say:\n%s", tail(raw, 20))
			case a.want == "blocked" && v.outcome == "ok", a.want != "blocked" && v.outcome != a.want:
				t.Fatalf("outcome %s, want %s: %s", v.outcome, a.want, v.detail)
			}
			t.Logf("%s: %s", v.outcome, v.detail)
			if a.reason == "" {
				return
			}
			host, reason := vars.Replace(a.host), vars.Replace(a.reason)
			allowed := a.want == "ok"
			for _, r := range recs {
				if r.Allowed == allowed && (host == "" || r.Host == host) && strings.Contains(r.Reason, reason) {
					if a.noDial && r.Addr != "" {
						t.Errorf("the proxy dialled %s for a refused address: %+v", r.Addr, r)
					}
					return
				}
			}
			t.Errorf("no %s audit record for host %q with reason containing %q; the log has:\n%s",
				map[bool]string{true: "allowed", false: "denied"}[allowed], host, reason, recordsJSON(recs))
		})
	}
}

// waitFile waits for a file the agent's script creates in its workspace.
func waitFile(t testing.TB, path string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(filepath.Join(filepath.Dir(path), "results.txt"))
			t.Fatalf("%s did not appear within %s; results so far:\n%s", filepath.Base(path), d, tail(string(data), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
