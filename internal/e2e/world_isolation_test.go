package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/egress"
)

// world is a test's own small internet: a bridge network the test creates
// and upstream containers on it answering to made-up names. Nothing in it
// is outside the machine, and the test removes all of it.
type world struct {
	tb      testing.TB
	cli     string     // the engine's CLI: docker, or podman
	user    *user.User // rootless Podman: whose the world is
	prefix  string     // airlock-e2e-<rand>: the network and the containers
	network string
	gateway string // the host's address on the network
	image   string
	dir     string // mounted into the upstreams: their server and TLS key
	caPEM   []byte // what clients trust for the upstreams' TLS
}

// upstream is one "internet host": the agent image running upstreamPy.
type upstream struct {
	name string // container name
	ip   string
}

// upstreamPy serves HTTP on 80, 8080 and 8081, HTTPS on 443, and counts UDP
// datagrams on 9999. Every request and datagram is printed, so a test can
// prove from `docker logs` what never arrived. GET /blob/N answers N bytes
// (the benchmark); /bench/* is not printed.
const upstreamPy = `import http.server, socket, ssl, sys, threading
NAME = sys.argv[1]
CHUNK = memoryview(bytes(1 << 20))
def log(*a):
    print(*a, flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def setup(self):
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle
        # and delayed ACKs add 40 ms to every kept-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *a):
        pass
    def do_GET(self):
        host = self.headers.get('Host', '')
        if not self.path.startswith('/bench/'):
            log('http', self.server.server_address[1], host, self.path, dict(self.headers))
        if self.path.startswith('/blob/'):
            n = int(self.path[6:])
            self.send_response(200)
            self.send_header('Content-Length', str(n))
            self.send_header('Content-Type', 'application/octet-stream')
            self.end_headers()
            while n > 0:
                k = min(n, len(CHUNK))
                self.wfile.write(CHUNK[:k])
                n -= k
            return
        body = ('upstream-ok name=%s host=%s path=%s\n' % (NAME, host, self.path)).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Content-Type', 'text/plain')
        self.end_headers()
        self.wfile.write(body)
class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def finish_request(self, request, addr):
        request.settimeout(10)
        try:
            request = CTX.wrap_socket(request, server_side=True)
        except Exception as e:
            log('tls-error', e)
            return
        request.settimeout(None)
        self.RequestHandlerClass(request, addr, self)
CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
CTX.load_cert_chain('/srv/leaf.pem', '/srv/leaf.key')
CTX.sni_callback = lambda sock, name, ctx: log('sni', name)
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', 9999))
    while True:
        data, addr = s.recvfrom(65535)
        log('udp', addr, data[:64])
servers = [TLSServer(('0.0.0.0', 443), Handler)]
for port in (80, 8080, 8081):
    s = http.server.ThreadingHTTPServer(('0.0.0.0', port), Handler)
    s.daemon_threads = True
    servers.append(s)
for s in servers:
    threading.Thread(target=s.serve_forever, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
log('ready')
threading.Event().wait()
`

// newWorld creates the network and the TLS material; upstreams come from
// world.start.
func newWorld(tb testing.TB) *world { tb.Helper(); return newWorldOn(tb, onDocker, nil) }

// newWorldOn is newWorld on Docker or on Podman (its CLI takes the same
// arguments; only its network description differs), rootless as u.
func newWorldOn(tb testing.TB, k engineKind, u *user.User) *world {
	tb.Helper()
	if shared.skip != "" {
		tb.Skip("no container engine: ", shared.skip)
	}
	b := make([]byte, 4)
	rand.Read(b)
	w := &world{tb: tb, cli: "docker", prefix: "airlock-e2e-" + hex.EncodeToString(b)}
	// Mounted into the upstreams, also by a rootless user's Podman: a
	// directory everyone may read, in one everyone may enter.
	dir, err := os.MkdirTemp("", "airlock-e2e-world-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	w.dir = dir
	w.network = w.prefix
	gateway := "{{(index .IPAM.Config 0).Gateway}}"
	switch k {
	case onDocker:
		w.image = agentImage(tb)
	case onPodman:
		w.cli, w.image, gateway = "podman", rootfulPodmanImage(tb), "{{(index .Subnets 0).Gateway}}"
	case onRootlessPodman:
		rootlessPodmanImage(tb, u)
		w.cli, w.user, w.image, gateway = "podman", u, podmanImages.ref, "{{(index .Subnets 0).Gateway}}"
	default:
		tb.Fatalf("no test world on %s", k)
	}
	w.docker("network", "create", "--label", "airlock-e2e=1", w.network)
	tb.Cleanup(w.cleanup)
	w.gateway = w.docker("network", "inspect", "-f", gateway, w.network)
	if net.ParseIP(w.gateway) == nil {
		tb.Fatalf("network %s has no gateway address: %q", w.network, w.gateway)
	}
	w.writeTLS()
	if err := os.WriteFile(filepath.Join(w.dir, "upstream.py"), []byte(upstreamPy), 0o644); err != nil {
		tb.Fatal(err)
	}
	return w
}

// agentImage is the image airlock runs agents in; the upstreams and the
// benchmark's direct client use it too, for python3 and curl.
func agentImage(tb testing.TB) string {
	tb.Helper()
	cmd := exec.Command(shared.bin, "image", "build")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+shared.configDir)
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("airlock image build: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// docker runs the engine's CLI (docker's, or podman's) and returns its
// trimmed output.
func (w *world) docker(args ...string) string {
	w.tb.Helper()
	out, err := w.command(args...).CombinedOutput()
	if err != nil {
		w.tb.Fatalf("%s %s: %v\n%s", w.cli, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// command is the engine's CLI with args, as the world's user.
func (w *world) command(args ...string) *exec.Cmd {
	if w.user != nil {
		return rootlessCmd(w.user, "", nil, w.cli, args...)
	}
	return exec.Command(w.cli, args...)
}

// start runs an upstream answering to aliases on the world's network.
func (w *world) start(role string, aliases ...string) upstream {
	w.tb.Helper()
	name := w.prefix + "-" + role
	args := []string{"run", "-d", "--name", name, "--label", "airlock-e2e=1", "--network", w.network,
		"--user", "0", "-v", w.dir + ":/srv:ro"}
	for _, a := range aliases {
		args = append(args, "--network-alias", a)
	}
	args = append(args, w.image, "python3", "-u", "/srv/upstream.py", role)
	w.docker(args...)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(w.logs(name), "ready") {
		if time.Now().After(deadline) {
			w.tb.Fatalf("upstream %s did not start:\n%s", name, w.logs(name))
		}
		time.Sleep(50 * time.Millisecond)
	}
	ip := w.docker("inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", w.network), name)
	if net.ParseIP(ip) == nil {
		w.tb.Fatalf("upstream %s has no address: %q", name, ip)
	}
	return upstream{name: name, ip: ip}
}

func (w *world) logs(container string) string {
	out, _ := w.command("logs", container).CombinedOutput()
	return string(out)
}

// cleanup removes every container on the network (the upstreams and any
// proxy a failed run left behind), then the network.
func (w *world) cleanup() {
	out, _ := w.command("ps", "-aq", "--filter", "network="+w.network).Output()
	for _, id := range strings.Fields(string(out)) {
		w.command("rm", "-f", id).Run()
	}
	out, _ = w.command("ps", "-aq", "--filter", "label=airlock-e2e=1", "--filter", "name="+w.prefix).Output()
	for _, id := range strings.Fields(string(out)) {
		w.command("rm", "-f", id).Run()
	}
	w.command("network", "rm", w.network).Run()
}

// upstreamNames are the names the upstreams' certificate covers.
var upstreamNames = []string{"allowed.test", "wild.test", "*.wild.test", "other.test", "stray.test"}

// writeTLS makes a CA and a leaf certificate for the upstream names.
func (w *world) writeTLS() {
	w.tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		w.tb.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "airlock e2e CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		w.tb.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		w.tb.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "allowed.test"},
		DNSNames:     upstreamNames,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		w.tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		w.tb.Fatal(err)
	}
	w.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"leaf.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		// Readable by the upstream's root; the directory is the test's own.
		"leaf.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		"ca.pem":   w.caPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o644); err != nil {
			w.tb.Fatal(err)
		}
	}
}

// hostServer listens on every host address (0.0.0.0 and ::) and counts
// the connections it accepts: the sandbox must never make one.
type hostServer struct {
	port  int
	conns atomic.Int64
}

func startHostServer(tb testing.TB) *hostServer {
	tb.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := &hostServer{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "upstream-ok name=host-server")
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				hs.conns.Add(1)
			}
		},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return hs
}

// auditRecords reads a run's egress log.
func auditRecords(tb testing.TB, state, runID string) []egress.Record {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(state, "airlock", "runs", runID, "egress", "egress.jsonl"))
	if err != nil {
		tb.Fatalf("egress log of run %s: %v", runID, err)
	}
	recs, err := egress.ReadRecords(bytes.NewReader(data))
	if err != nil {
		tb.Fatalf("egress log of run %s: %v", runID, err)
	}
	return recs
}

func recordsJSON(recs []egress.Record) string {
	var b strings.Builder
	for _, r := range recs {
		line, _ := json.Marshal(r)
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}
