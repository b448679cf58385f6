package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// uiServer is a running `airlock ui` of a test's env, and a browser-like
// client signed in to it.
type uiServer struct {
	t      *testing.T
	base   string
	token  string
	client *http.Client // with the session cookie
	csrf   string
}

// startUI starts the real binary's dashboard on a free loopback port and
// signs a client in with the printed URL, as a browser does.
func startUI(t *testing.T, e *env, args ...string) *uiServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := e.command(ctx, shared.bin, append([]string{"ui", "--no-open", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopGroup(cmd, syscall.SIGTERM, 10*time.Second)
		cancel()
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- strings.TrimSpace(line)
		io.Copy(io.Discard, out)
	}()
	var printed string
	select {
	case printed = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatalf("airlock ui printed no URL:\n%s", stderr.String())
	}
	u, err := url.Parse(printed)
	if err != nil || u.Query().Get("token") == "" {
		t.Fatalf("airlock ui printed %q, want its URL with a token\n%s", printed, stderr.String())
	}
	s := &uiServer{t: t, base: u.Scheme + "://" + u.Host, token: u.Query().Get("token")}
	jar, _ := cookiejar.New(nil)
	s.client = &http.Client{Jar: jar, Timeout: time.Minute}
	resp, err := s.client.Get(printed)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.RawQuery != "" {
		t.Errorf("after signing in the browser is at %s: the token stays in the address bar", resp.Request.URL)
	}
	var sess struct {
		CSRF    string `json:"csrf"`
		Project string `json:"project"`
	}
	s.getJSON("/api/session", &sess)
	if sess.CSRF == "" || sess.Project != e.repo {
		t.Fatalf("session %+v, want a CSRF token and project %s", sess, e.repo)
	}
	s.csrf = sess.CSRF
	return s
}

// get answers path with the signed-in client; mod changes the request.
func (s *uiServer) do(method, path, body string, mod func(*http.Request)) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Airlock-CSRF", s.csrf)
		req.Header.Set("Origin", s.base)
	}
	if mod != nil {
		mod(req)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, data
}

func (s *uiServer) getJSON(path string, v any) []byte {
	s.t.Helper()
	resp, data := s.do("GET", path, "", nil)
	if resp.StatusCode != 200 {
		s.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, data)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		s.t.Errorf("GET %s: Content-Type %q, headers %v", path, ct, resp.Header)
	}
	if err := json.Unmarshal(data, v); err != nil {
		s.t.Fatalf("GET %s: %v\n%s", path, err, data)
	}
	return data
}

// cookieHeader is the session cookie as a browser sends it.
func (s *uiServer) cookieHeader() string {
	u, _ := url.Parse(s.base)
	var parts []string
	for _, c := range s.client.Jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// dialTerminal opens a run's terminal WebSocket as the page does.
func (s *uiServer) dialTerminal(ctx context.Context, id, origin string, signedIn bool) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	if signedIn {
		h.Set("Cookie", s.cookieHeader())
	}
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.base, "http")+"/api/runs/"+id+"/terminal?cols=80&rows=24", &websocket.DialOptions{HTTPHeader: h})
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, id, data string }

// readEvents reads a stream's events until stop says so or ctx ends.
func readEvents(ctx context.Context, t *testing.T, s *uiServer, path string, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.base+path, nil)
	client := &http.Client{Jar: s.client.Jar}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var evs []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" {
				evs = append(evs, cur)
				if stop(cur) {
					return evs
				}
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return evs
}

// termUntil reads the terminal until its output contains want.
func termUntil(ctx context.Context, t *testing.T, c *websocket.Conn, out *bytes.Buffer, want string) {
	t.Helper()
	for !strings.Contains(out.String(), want) {
		typ, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("terminal: waiting for %q: %v\nscreen so far:\n%q", want, err, tail(out.String(), 10))
		}
		if typ == websocket.MessageBinary {
			out.Write(data)
		}
	}
}

type uiRun struct {
	ID     string  `json:"id"`
	Status string  `json:"status"`
	Name   string  `json:"name"`
	Cost   float64 `json:"cost_usd"`
}

// TestUI drives the dashboard's API as its page does, against the real
// binary and a real run on Docker: the run's transcript streams while it
// runs, a terminal runs commands in its sandbox and follows resizes, the
// finished run is listed with its diff, and a merge from the page brings
// its commit onto the user's branch.
func TestUI(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.BashScript("ui",
		"echo 'print(1)' > ui.py && git add ui.py && git commit -qm 'Add ui.py' && echo UI-STEP-ONE",
		"echo UI-STEP-TWO; sleep 40"))
	s := startUI(t, e)
	id := strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "Add ui.py.", "--name", "ui").stdout)

	// The transcript streams while the agent works.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var lastID string
	evs := readEvents(ctx, t, s, "/api/runs/"+id+"/stream", func(ev sseEvent) bool {
		if ev.name == "transcript" {
			lastID = ev.id
		}
		return ev.name == "transcript" && strings.Contains(ev.data, `"kind":"tool_result","text":"UI-STEP-ONE`)
	})
	if lastID == "" || !strings.Contains(evs[len(evs)-1].data, `"text":"UI-STEP-ONE`) {
		t.Fatalf("the run's stream never carried its first step's output: %+v", evs)
	}
	var running uiRun
	for _, ev := range evs {
		if ev.name == "run" {
			json.Unmarshal([]byte(ev.data), &running)
		}
	}
	if running.ID != id || running.Status != "running" {
		t.Errorf("the stream's run event: %+v, want %s running", running, id)
	}
	// Resuming at the last offset brings nothing already seen.
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	resumed := readEvents(rctx, t, s, "/api/runs/"+id+"/stream?from="+lastID, func(ev sseEvent) bool {
		return ev.name == "transcript"
	})
	rcancel()
	for _, ev := range resumed {
		if ev.name == "transcript" && strings.Contains(ev.data, `"text":"UI-STEP-ONE`) {
			t.Errorf("resuming at %s sent the first step again: %s", lastID, ev.data)
		}
	}

	// The diff so far, from inside the running sandbox.
	var live struct {
		Files []struct{ Path, Status string } `json:"files"`
	}
	s.getJSON("/api/runs/"+id+"/diff", &live)
	if len(live.Files) != 1 || live.Files[0].Path != "ui.py" || live.Files[0].Status != "A" {
		t.Errorf("the running run's diff: %+v, want ui.py added", live)
	}

	// A terminal in the running sandbox.
	c, _, err := s.dialTerminal(ctx, id, s.base, true)
	if err != nil {
		t.Fatalf("terminal: %v", err)
	}
	var screen bytes.Buffer
	c.Write(ctx, websocket.MessageBinary, []byte("echo h''i-from-the-page\r"))
	termUntil(ctx, t, c, &screen, "hi-from-the-page")
	c.Write(ctx, websocket.MessageText, []byte(`{"type":"resize","cols":91,"rows":37}`))
	time.Sleep(500 * time.Millisecond) // the resize and the typing go by different ways
	c.Write(ctx, websocket.MessageBinary, []byte("stty size\r"))
	termUntil(ctx, t, c, &screen, "37 91")
	c.Close(websocket.StatusNormalClosure, "")

	// A second tab joins the same tmux session: what the first typed is there.
	c2, _, err := s.dialTerminal(ctx, id, s.base, true)
	if err != nil {
		t.Fatalf("second terminal: %v", err)
	}
	var screen2 bytes.Buffer
	c2.Write(ctx, websocket.MessageBinary, []byte("tmux display-message -p 'session=#{session_name}'\r"))
	termUntil(ctx, t, c2, &screen2, "session=airlock-web")
	c2.Close(websocket.StatusNormalClosure, "")

	// Finished: listed, with its diff, then merged from the page.
	e.ok("wait", id)
	var runs []uiRun
	s.getJSON("/api/runs", &runs)
	if len(runs) != 1 || runs[0].ID != id || runs[0].Status != "succeeded" {
		t.Fatalf("/api/runs = %+v, want %s succeeded", runs, id)
	}
	var diff struct {
		Stat  string `json:"stat"`
		Files []struct {
			Path, Status, Patch string
			Additions           int
		} `json:"files"`
	}
	s.getJSON("/api/runs/"+id+"/diff", &diff)
	if len(diff.Files) != 1 || diff.Files[0].Path != "ui.py" || diff.Files[0].Status != "A" || diff.Files[0].Additions != 1 || !strings.Contains(diff.Stat, "ui.py") {
		t.Errorf("diff %+v", diff)
	}
	var detail struct {
		Run     uiRun  `json:"run"`
		Summary string `json:"summary"`
	}
	s.getJSON("/api/runs/"+id, &detail)
	if detail.Run.ID != id || detail.Summary != "Done." {
		t.Errorf("run page data %+v", detail)
	}
	var tr struct {
		Next    int64 `json:"next"`
		Entries []struct{ Kind, Text string }
	}
	s.getJSON("/api/runs/"+id+"/transcript", &tr)
	kinds := map[string]bool{}
	for _, en := range tr.Entries {
		kinds[en.Kind] = true
	}
	if !kinds["tool_use"] || !kinds["tool_result"] || !kinds["result"] || tr.Next == 0 {
		t.Errorf("transcript kinds %v, next %d", kinds, tr.Next)
	}

	// Push to the user's remote (a bare repository), then merge.
	bare := filepath.Join(e.tempDir(), "origin.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	e.git("remote", "add", "origin", bare)
	if resp, data := s.do("POST", "/api/runs/"+id+"/push", `{"remote":"origin","branch":""}`, nil); resp.StatusCode != 200 || !strings.Contains(string(data), "Pushed") {
		t.Fatalf("push: %d %s", resp.StatusCode, data)
	}
	if out, err := exec.Command("git", "-C", bare, "log", "-1", "--format=%s", "airlock/"+id).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "Add ui.py" {
		t.Errorf("after the page's push the remote's airlock/%s is at %q (%v)", id, out, err)
	}
	if resp, data := s.do("POST", "/api/runs/"+id+"/push", `{"remote":"nowhere"}`, nil); resp.StatusCode < 400 || !strings.Contains(string(data), "nowhere") {
		t.Errorf("push to a missing remote: %d %s, want the CLI's error", resp.StatusCode, data)
	}

	if resp, data := s.do("POST", "/api/runs/"+id+"/merge", `{"squash":false}`, nil); resp.StatusCode != 200 {
		t.Fatalf("merge: %d %s", resp.StatusCode, data)
	} else if !strings.Contains(string(data), "Merged "+id) {
		t.Errorf("merge answered %s", data)
	}
	if got := e.git("log", "-1", "--format=%s", "main"); got != "Add ui.py" {
		t.Fatalf("after the page's merge main is at %q", got)
	}
	if resp, data := s.do("POST", "/api/runs/"+id+"/kill", `{}`, nil); resp.StatusCode != 200 || !strings.Contains(string(data), "already finished") {
		t.Errorf("kill of a finished run: %d %s, want the CLI's note", resp.StatusCode, data)
	}
}

// TestUITerminalEngines: the page's terminal is an exec with a TTY in the
// sandbox, which each engine does its own way (Podman's API, rootless too,
// and Incus' exec websockets): typing, a resize and a second tab on the
// same tmux session work on each. TestUI does all of it on Docker.
func TestUITerminalEngines(t *testing.T) {
	onEngines(t, []engineKind{onPodman, onRootlessPodman, onIncus}, func(t *testing.T, e *env) {
		e.server(testkit.BashScript("uiterm", "echo UI-TERM-READY; sleep 60"))
		s := startUI(t, e)
		id := strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "Wait.", "--name", "uiterm").stdout)
		defer e.airlock("kill", id)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		readEvents(ctx, t, s, "/api/runs/"+id+"/stream", func(ev sseEvent) bool {
			return ev.name == "transcript" && strings.Contains(ev.data, "UI-TERM-READY")
		})
		c, _, err := s.dialTerminal(ctx, id, s.base, true)
		if err != nil {
			t.Fatalf("terminal: %v", err)
		}
		defer c.CloseNow()
		var screen bytes.Buffer
		c.Write(ctx, websocket.MessageBinary, []byte("echo h''i-on-"+e.engine.String()+"\r"))
		termUntil(ctx, t, c, &screen, "hi-on-"+e.engine.String())
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"resize","cols":83,"rows":29}`))
		time.Sleep(500 * time.Millisecond) // the resize and the typing go by different ways
		c.Write(ctx, websocket.MessageBinary, []byte("stty size\r"))
		termUntil(ctx, t, c, &screen, "29 83")

		c2, _, err := s.dialTerminal(ctx, id, s.base, true)
		if err != nil {
			t.Fatalf("second terminal: %v", err)
		}
		defer c2.CloseNow()
		var screen2 bytes.Buffer
		c2.Write(ctx, websocket.MessageBinary, []byte("tmux display-message -p 'session=#{session_name}'\r"))
		termUntil(ctx, t, c2, &screen2, "session=airlock-web")
	})
}

// TestUIRefusals: without the session cookie, from another origin, or by
// another host name, nothing is answered, over HTTP and WebSocket alike; a
// cross-site form POST cannot merge.
func TestUIRefusals(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.BashScript("refuse",
		"echo x > x.txt && git add x.txt && git commit -qm 'Add x.txt'", "sleep 30"))
	if res := e.airlock("ui", "--no-open", "--addr", "0.0.0.0:0"); res.code == 0 || !strings.Contains(res.stderr, "--allow-remote") {
		t.Errorf("ui on every address without --allow-remote: exit %d\n%s", res.code, res.stderr)
	}
	s := startUI(t, e)
	id := strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "Add x.", "--name", "refuse").stdout)
	anon := &http.Client{Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"no cookie", func() *http.Request { r, _ := http.NewRequest("GET", s.base+"/api/runs", nil); return r }, 401},
		{"old token", func() *http.Request {
			r, _ := http.NewRequest("GET", s.base+"/?token="+otherToken(s.token), nil)
			return r
		}, 401},
		{"foreign Origin", func() *http.Request {
			r, _ := http.NewRequest("GET", s.base+"/api/runs", nil)
			r.Header.Set("Cookie", s.cookieHeader())
			r.Header.Set("Origin", "http://evil.example")
			return r
		}, 403},
		{"rebound Host", func() *http.Request {
			r, _ := http.NewRequest("GET", s.base+"/api/runs", nil)
			r.Header.Set("Cookie", s.cookieHeader())
			r.Host = "evil.example:" + s.base[strings.LastIndex(s.base, ":")+1:]
			return r
		}, 403},
		{"form POST", func() *http.Request {
			r, _ := http.NewRequest("POST", s.base+"/api/runs/"+id+"/stop", strings.NewReader("{}"))
			r.Header.Set("Cookie", s.cookieHeader())
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, 415},
		{"JSON POST without CSRF", func() *http.Request {
			r, _ := http.NewRequest("POST", s.base+"/api/runs/"+id+"/stop", strings.NewReader("{}"))
			r.Header.Set("Cookie", s.cookieHeader())
			r.Header.Set("Content-Type", "application/json")
			return r
		}, 403},
	} {
		resp, err := anon.Do(tt.req())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tt := range []struct {
		name     string
		origin   string
		signedIn bool
		want     int
	}{{"WebSocket without the cookie", s.base, false, 401}, {"WebSocket from another origin", "http://evil.example", true, 403}} {
		c, resp, err := s.dialTerminal(ctx, id, tt.origin, tt.signedIn)
		if err == nil {
			c.CloseNow()
			t.Errorf("%s: accepted", tt.name)
			continue
		}
		if resp == nil || resp.StatusCode != tt.want {
			t.Errorf("%s: %v %v, want %d", tt.name, resp, err, tt.want)
		}
	}
	// The refused stops stopped nothing.
	var r struct {
		Run uiRun `json:"run"`
	}
	s.getJSON("/api/runs/"+id, &r)
	if r.Run.Status != "running" {
		t.Errorf("after refused requests the run is %s, want running", r.Run.Status)
	}
	// The page's own stop works.
	if resp, data := s.do("POST", "/api/runs/"+id+"/stop", `{}`, nil); resp.StatusCode != 200 {
		t.Fatalf("stop: %d %s", resp.StatusCode, data)
	}
	s.getJSON("/api/runs/"+id, &r)
	if r.Run.Status != "stopped" {
		t.Errorf("after stop the run is %s", r.Run.Status)
	}
	// A finished run has no terminal: the socket closes saying why.
	c, _, err := s.dialTerminal(ctx, id, s.base, true)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != 4000 || !strings.Contains(err.Error(), "not running") {
		t.Errorf("terminal of a stopped run: %v, want close 4000 saying it is not running", err)
	}
}

// TestUIRunFlag: `airlock run --ui` starts the run detached and prints its
// page on a dashboard it starts in the background, and then on the same
// one.
func TestUIRunFlag(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.BashScript("ui-flag", "echo flagged"))
	note := filepath.Join(e.state, "airlock", "ui", "server.json")
	t.Cleanup(func() {
		var n struct{ PID int }
		if data, err := os.ReadFile(note); err == nil && json.Unmarshal(data, &n) == nil && n.PID > 0 {
			syscall.Kill(n.PID, syscall.SIGTERM)
		}
	})
	page := func(name string) (id, pageURL string) {
		res := e.ok("run", "--ui", "-y", "-m", "Say it.", "--name", name)
		id = strings.TrimSpace(res.stdout)
		for _, l := range strings.Split(res.stderr, "\n") {
			if u, ok := strings.CutPrefix(l, "Its page: "); ok {
				pageURL = u
			}
		}
		if id == "" || !strings.Contains(pageURL, "/runs/"+id+"?token=") {
			t.Fatalf("run --ui: id %q, page %q\n%s", id, pageURL, res.stderr)
		}
		return id, pageURL
	}
	id, first := page("ui-flag")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: time.Minute}
	resp, err := c.Get(first)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/runs/"+id {
		t.Fatalf("opening %s: %d at %s", first, resp.StatusCode, resp.Request.URL)
	}
	u, _ := url.Parse(first)
	resp, err = c.Get(u.Scheme + "://" + u.Host + "/api/runs/" + id)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id":"`+id+`"`) {
		t.Fatalf("the run's data on the page's server: %d %s", resp.StatusCode, body)
	}
	id2, second := page("ui-flag-2")
	if v, _ := url.Parse(second); v.Host != u.Host {
		t.Errorf("the second run --ui started another dashboard: %s, then %s", first, second)
	}
	// Both: a run still harvesting when the test's clean-up comes left
	// its harvest container behind.
	e.ok("wait", id)
	e.ok("wait", id2)
}

// TestUIShellTerminal: an interactive run's terminal tab is the agent's
// own terminal UI (its tmux session), as airlock attach shows it.
func TestUIShellTerminal(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.ChatScript())
	id := e.startShell()
	s := startUI(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, _, err := s.dialTerminal(ctx, id, s.base, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var screen bytes.Buffer
	termUntil(ctx, t, c, &screen, "bypass permissions")
	if res := e.airlock("exec", id, "--", "tmux", "has-session", "-t", "airlock-web"); res.code == 0 {
		t.Errorf("the page opened a shell session beside the agent's")
	}
	e.ok("kill", id)
}

// TestUINewRun: the page's new-run form lists the project's prompt files
// and starts a detached run from one, as airlock run -d does; its egress
// log is there once it has run. Bad input gets the CLI's error and starts
// nothing.
func TestUINewRun(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.BashScript("from-page", "echo from the page"))
	e.write(".airlock/prompts/hello.md", "---\nname: hello-page\n---\nSay hello.\n")
	s := startUI(t, e)
	var choices struct {
		Prompts, Profiles, Agents []string
	}
	s.getJSON("/api/new", &choices)
	if len(choices.Prompts) != 1 || choices.Prompts[0] != ".airlock/prompts/hello.md" || len(choices.Agents) == 0 {
		t.Fatalf("/api/new = %+v", choices)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"prompt_file":"../../etc/passwd"}`, "not inside the project"},
		{`{}`, "give a prompt"},
		{`{"prompt":"x","agent":"no-such-agent"}`, "no-such-agent"},
		{`{"prompt":"x","max_cost_usd":-1}`, "negative"},
	} {
		resp, data := s.do("POST", "/api/runs", bad.body, nil)
		if resp.StatusCode != 400 || !strings.Contains(string(data), bad.want) {
			t.Errorf("POST /api/runs %s: %d %s, want 400 saying %q", bad.body, resp.StatusCode, data, bad.want)
		}
	}
	if n := len(e.runs()); n != 0 {
		t.Fatalf("bad requests started %d runs", n)
	}
	resp, data := s.do("POST", "/api/runs", `{"prompt_file":".airlock/prompts/hello.md","max_cost_usd":5}`, nil)
	var started struct{ ID string }
	if resp.StatusCode != 200 || json.Unmarshal(data, &started) != nil || started.ID == "" {
		t.Fatalf("POST /api/runs: %d %s", resp.StatusCode, data)
	}
	e.ok("wait", started.ID)
	runs := e.runs()
	if len(runs) != 1 || runs[0].ID != started.ID || runs[0].Name != "hello-page" || runs[0].Project != e.repo {
		t.Fatalf("runs %+v, want the one the page started, named by its prompt", runs)
	}
	var egress []struct {
		Decision, Host string
	}
	s.getJSON("/api/runs/"+started.ID+"/egress", &egress)
	allowed := 0
	for _, r := range egress {
		if r.Decision == "allowed" {
			allowed++
		}
	}
	if allowed == 0 {
		t.Errorf("egress %+v: the agent's model requests are not there", egress)
	}
}

// otherToken is a token of the same shape that differs from tok in its
// first character (a fixed first character would match one start in 64).
func otherToken(tok string) string {
	first := byte('x')
	if tok[0] == first {
		first = 'y'
	}
	return string(first) + tok[1:]
}
