package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// seenRequest is what a test server received.
type seenRequest struct {
	Host, Method, Path, Query, Auth string
	Header                          http.Header
}

type requestLog struct {
	mu   sync.Mutex
	reqs []seenRequest
}

func (l *requestLog) add(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, seenRequest{r.Host, r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Clone()})
}

func (l *requestLog) all() []seenRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seenRequest(nil), l.reqs...)
}

// npmRegistry is a small npm-style registry over HTTPS, on the host's
// address on the engine's bridge, serving one package to requests that
// carry the right token and 401 to any other.
type npmRegistry struct {
	port  int
	caPEM []byte
	log   requestLog
	token atomic.Pointer[string] // the one it accepts
}

const fixturePackage = "airlock-fixture"

func startNPMRegistry(t *testing.T, addr, token string, names ...string) *npmRegistry {
	t.Helper()
	caPEM, cert := testTLS(t, names...)
	ln, err := tls.Listen("tcp", addr+":0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	reg := &npmRegistry{port: ln.Addr().(*net.TCPAddr).Port, caPEM: caPEM}
	reg.token.Store(&token)
	tgz := fixtureTarball(t)
	sum := sha512.Sum512(tgz)
	sha := sha1.Sum(tgz)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg.log.add(r)
		if r.Header.Get("Authorization") != "Bearer "+*reg.token.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error":"the registry wants its token"}`)
			return
		}
		base := fmt.Sprintf("https://%s/", r.Host)
		switch r.URL.Path {
		case "/" + fixturePackage:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"name": fixturePackage, "dist-tags": map[string]string{"latest": "1.0.0"},
				"versions": map[string]any{"1.0.0": map[string]any{
					"name": fixturePackage, "version": "1.0.0", "main": "index.js",
					"dist": map[string]string{
						"tarball":   base + fixturePackage + "/-/" + fixturePackage + "-1.0.0.tgz",
						"integrity": "sha512-" + base64.StdEncoding.EncodeToString(sum[:]),
						"shasum":    hex.EncodeToString(sha[:]),
					},
				}},
			})
		case "/" + fixturePackage + "/-/" + fixturePackage + "-1.0.0.tgz":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(tgz)
		default:
			http.NotFound(w, r)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return reg
}

// startPlainServer is another allowed host, over plain HTTP, where the
// proxy sees every request: what it receives, it records.
func startPlainServer(t *testing.T, addr string) (int, *requestLog) {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	log := &requestLog{}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		fmt.Fprintln(w, "plain-ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port, log
}

func fixtureTarball(t *testing.T) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range map[string]string{
		"package/package.json": `{"name":"` + fixturePackage + `","version":"1.0.0","main":"index.js"}` + "\n",
		"package/index.js":     "module.exports = 'fixture-ok';\n",
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(1e9, 0)})
		tw.Write([]byte(content))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// testTLS is a test CA and a certificate it signed for names.
func testTLS(t *testing.T, names ...string) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "airlock e2e registry CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}

// injectConfig is the user config of the injection tests (a repository's
// own may not inject credentials): the registry (HTTPS, with the token
// injected, its CA at caPath), another name on the same server, and a
// plain-HTTP host, all pinned to the host's bridge address.
func injectConfig(gw string, regPort, plainPort int, tokenEnv, caPath string) string {
	return fmt.Sprintf(`[egress]
allow = ["registry.test:%[2]d", "other.test:%[2]d", "plain.test:%[3]d"]
extra_hosts = ["registry.test:%[1]s", "other.test:%[1]s", "plain.test:%[1]s"]
allow_cidrs = ["%[1]s/32"]
ca_certificates = ["%[5]s"]

[[egress.inject]]
host = "registry.test:%[2]d"
header = "Authorization: Bearer {}"
from = "env:%[4]s"
placeholder_env = "NPM_TOKEN"
`, gw, regPort, plainPort, tokenEnv, caPath)
}

// npmScript installs from the registry with the placeholder in .npmrc,
// then dumps the sandbox's environment (every process's) for the test to
// search.
const npmScript = `export NPM_CONFIG_UPDATE_NOTIFIER=false
npm view airlock-fixture version > view.txt 2> view.err
npm install --no-audit --no-fund airlock-fixture > install.txt 2>&1
node -e "console.log(require('airlock-fixture'))" > require.txt 2>&1
{ env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\0' '\n' < "$f"; echo; done; } > envdump.txt 2>/dev/null
echo finished
`

// A credential in [[egress.inject]] reaches an HTTPS registry from npm in
// the sandbox, which holds only a placeholder: the proxy intercepts that
// host alone and swaps the header on the way out. The token is nowhere in
// the sandbox, its transcript or the logs (issue 13, part 2).
func TestInjectNPMRegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gw := e.gateway()
	token := "npm_" + randHex(36)
	reg := startNPMRegistry(t, gw, token, "registry.test", "other.test")
	plainPort, _ := startPlainServer(t, gw)

	cfgPath := userConfig(t, e, injectConfig(gw, reg.port, plainPort, "AIRLOCK_E2E_REGISTRY_TOKEN", filepath.Join(e.repo, "registry-ca.pem")))
	e.write("registry-ca.pem", string(reg.caPEM))
	e.write(".npmrc", fmt.Sprintf("registry=https://registry.test:%[1]d/\n//registry.test:%[1]d/:_authToken=${NPM_TOKEN}\n", reg.port))
	e.write("npm.sh", npmScript)
	e.git("add", ".")
	e.git("commit", "-qm", "npm from a private registry")

	t.Run("a source that fails is one error and creates nothing", func(t *testing.T) {
		e.server(runScript("never", "echo never"))
		res := e.airlock("run", "-y", "-m", "x", "--name", "nosecret")
		if res.code == 0 || !strings.Contains(res.stderr, fmt.Sprintf("%s:%d: egress.inject for registry.test:", cfgPath, userConfigOffset+7)) ||
			!strings.Contains(res.stderr, "env:AIRLOCK_E2E_REGISTRY_TOKEN: the environment variable AIRLOCK_E2E_REGISTRY_TOKEN is not set") {
			t.Errorf("exit %d, want one error naming the entry and the variable:\n%s", res.code, res.stderr)
		}
		if runs := e.runs(); len(runs) != 0 {
			t.Errorf("a failed source left %d runs", len(runs))
		}
	})

	t.Run("an injection for a host the policy refuses is an error", func(t *testing.T) {
		cfg := injectConfig(gw, reg.port, plainPort, "AIRLOCK_E2E_REGISTRY_TOKEN", filepath.Join(e.repo, "registry-ca.pem"))
		userConfig(t, e, strings.Replace(cfg, fmt.Sprintf(`"registry.test:%d", `, reg.port), "", 1))
		defer userConfig(t, e, cfg)
		e.server(runScript("never", "echo never"))
		e.extra = append(e.extra, "AIRLOCK_E2E_REGISTRY_TOKEN=x")
		res := e.airlock("run", "-y", "-m", "x", "--name", "notallowed")
		if res.code == 0 || !strings.Contains(res.stderr, fmt.Sprintf("%s:%d: egress.inject: registry.test:", cfgPath, userConfigOffset+7)) ||
			!strings.Contains(res.stderr, "does not let the agent reach it") {
			t.Errorf("exit %d, want one error naming the entry:\n%s", res.code, res.stderr)
		}
		if runs := e.runs(); len(runs) != 0 {
			t.Errorf("%d runs made", len(runs))
		}
	})

	e.server(runScript("npm", "sh npm.sh"))
	e.extra = append(e.extra, "AIRLOCK_E2E_REGISTRY_TOKEN="+token)
	res := e.ok("run", "-y", "-m", "Install the fixture.", "--name", "npm")
	r := e.runs()[0]
	runDir := filepath.Join(e.state, "airlock", "runs", r.ID)
	ws := filepath.Join(runDir, "workspace")
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(ws, name))
		return strings.TrimSpace(string(b))
	}

	t.Run("npm got the package with the real token", func(t *testing.T) {
		if read("view.txt") != "1.0.0" || read("require.txt") != "fixture-ok" {
			t.Errorf("npm view: %q (%s); require: %q\ninstall:\n%s", read("view.txt"), read("view.err"), read("require.txt"), read("install.txt"))
		}
		reqs := reg.log.all()
		var tarball bool
		for _, q := range reqs {
			if q.Auth != "Bearer "+token {
				t.Errorf("the registry got %s %s with Authorization %q, want the real token", q.Method, q.Path, q.Auth)
			}
			tarball = tarball || strings.HasSuffix(q.Path, ".tgz")
		}
		if !tarball {
			t.Errorf("the registry never served the tarball: %+v", reqs)
		}
	})
	t.Run("the token is nowhere in the sandbox", func(t *testing.T) {
		dump := read("envdump.txt")
		if !strings.Contains(dump, "NPM_TOKEN=airlock-placeholder-") || !strings.Contains(dump, "SSL_CERT_FILE=/tmp/airlock-ca-bundle.pem") {
			t.Fatalf("the environment dump lacks the placeholder; it proves nothing:\n%s", tail(dump, 20))
		}
		places := map[string]string{"environment of the sandbox's processes": dump, "run output": res.stdout + res.stderr,
			"logs --raw": e.ok("logs", "--raw").stdout, "credentials ls": e.ok("credentials", "ls").stdout}
		inspect, err := exec.Command("docker", "inspect", r.Container).CombinedOutput()
		if err != nil {
			t.Fatalf("inspect: %v\n%s", err, inspect)
		}
		places["docker inspect"] = string(inspect)
		for _, sub := range []string{"workspace", "home", "log", "out", "egress", "run-ca.pem", "prompt.md"} {
			filepath.WalkDir(filepath.Join(runDir, sub), func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					b, _ := os.ReadFile(p)
					places[p] = string(b)
				}
				return nil
			})
		}
		for where, text := range places {
			if strings.Contains(text, token) || strings.Contains(text, token[4:24]) {
				t.Errorf("the token is in %s", where)
			}
		}
		if _, err := os.Stat(filepath.Join(runDir, "egress", "secrets.json")); !os.IsNotExist(err) {
			t.Errorf("the proxy's secrets file outlived its start: %v", err)
		}
		if ca := places[filepath.Join(runDir, "run-ca.pem")]; !strings.Contains(ca, "BEGIN CERTIFICATE") || strings.Contains(ca, "PRIVATE") {
			t.Errorf("run-ca.pem:\n%s", ca)
		}
	})
	t.Run("the policy shown before the run names the injection", func(t *testing.T) {
		if !strings.Contains(res.stderr, fmt.Sprintf("inject registry.test:%d", reg.port)) ||
			!strings.Contains(res.stderr, "header Authorization: Bearer {} from env:AIRLOCK_E2E_REGISTRY_TOKEN") {
			t.Errorf("run's output:\n%s", res.stderr)
		}
	})
	t.Run("the audit log shows the injection, not the token", func(t *testing.T) {
		recs := auditRecords(t, e.state, r.ID)
		n := 0
		for _, rec := range recs {
			if rec.Kind == "https" && rec.Host == "registry.test" && rec.Allowed && strings.Contains(rec.Reason, "injected header Authorization") {
				n++
			}
		}
		if n < 2 {
			t.Errorf("%d injected requests in the audit log, want the packument and the tarball at least:\n%s", n, recordsJSON(recs))
		}
	})
	t.Run("credentials ls lists the injection, masked", func(t *testing.T) {
		out := e.ok("credentials", "ls").stdout
		want := fmt.Sprintf("inject registry.test:%d (header Authorization: Bearer {})\t%s\tenv:AIRLOCK_E2E_REGISTRY_TOKEN (", reg.port, token[:7]+"…"+token[len(token)-4:])
		if !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("%s:%d)", cfgPath, userConfigOffset+7)) {
			t.Errorf("credentials ls:\n%s\nwant a line with %q", out, want)
		}
	})
}

// A persistent run started again resolves its injected credential again
// (it is never stored): a token rotated on the host meanwhile is the one
// the registry gets, through a new CA the restarted sandbox trusts.
func TestInjectPersistentRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	gw := e.gateway()
	first, second := "tok1-"+randHex(32), "tok2-"+randHex(32)
	reg := startNPMRegistry(t, gw, first, "registry.test")
	plainPort, _ := startPlainServer(t, gw)
	userConfig(t, e, injectConfig(gw, reg.port, plainPort, "AIRLOCK_E2E_REGISTRY_TOKEN", filepath.Join(e.repo, "registry-ca.pem")))
	e.write("registry-ca.pem", string(reg.caPEM))
	e.write(".npmrc", fmt.Sprintf("registry=https://registry.test:%[1]d/\n//registry.test:%[1]d/:_authToken=${NPM_TOKEN}\n", reg.port))
	e.git("add", ".")
	e.git("commit", "-qm", "npm from a private registry")
	view := "NPM_CONFIG_UPDATE_NOTIFIER=false npm view airlock-fixture version > %s 2>&1; cp /airlock/run-ca.pem %s"

	srv, url := e.server(runScript("leg1", fmt.Sprintf(view, "view1.txt", "ca1.pem")))
	e.extra = append(e.extra, "AIRLOCK_E2E_REGISTRY_TOKEN="+first)
	e.ok("run", "-y", "--persistent", "-m", "View it.", "--name", "leg")
	r := e.runs()[0]
	srv.Close()
	next := testkit.NewServer(testkit.Resumed(1, runScript("leg2", fmt.Sprintf(view, "view2.txt", "ca2.pem"))))
	if _, err := next.Start(strings.TrimPrefix(url, "http://")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })

	reg.token.Store(&second)
	for i, kv := range e.extra {
		if strings.HasPrefix(kv, "AIRLOCK_E2E_REGISTRY_TOKEN=") {
			e.extra[i] = "AIRLOCK_E2E_REGISTRY_TOKEN=" + second
		}
	}
	e.ok("start", "leg", "-m", "View it again.")
	e.ok("wait", "leg")
	ws := filepath.Join(e.state, "airlock", "runs", r.ID, "workspace")
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(ws, name))
		return strings.TrimSpace(string(b))
	}
	if read("view1.txt") != "1.0.0" || read("view2.txt") != "1.0.0" {
		t.Errorf("npm view, first leg: %q; second leg: %q", read("view1.txt"), read("view2.txt"))
	}
	if read("ca1.pem") == "" || read("ca1.pem") == read("ca2.pem") {
		t.Error("the restarted run did not get a new CA")
	}
	var firstSeen, secondSeen int
	for _, q := range reg.log.all() {
		switch q.Auth {
		case "Bearer " + first:
			firstSeen++
		case "Bearer " + second:
			secondSeen++
		default:
			t.Errorf("the registry got Authorization %q", q.Auth)
		}
	}
	if firstSeen == 0 || secondSeen == 0 {
		t.Errorf("requests with the first token: %d, with the rotated one: %d", firstSeen, secondSeen)
	}
}
