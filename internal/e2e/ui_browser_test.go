package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// The web dashboard in a real browser: Debian's headless Chromium driven
// over the DevTools protocol, against the real `airlock ui` and real Docker
// runs of the real agent (the scripted model server is the only fake).
// The HTTP side of the server's guards (no token, foreign Host and Origin,
// CSRF) is ui_test.go's; here is what only a browser shows.
func TestUIBrowser(t *testing.T) {
	chromium := needChromium(t)
	if _, err := os.Stat(filepath.Join(repoRoot(), "internal", "ui", "dist", "index.html")); err != nil {
		// TestMain's binary embeds internal/ui/dist as it is.
		t.Fatal("the web UI is not built: run `make web` (make test does) before the tests")
	}
	// The screenshots of an earlier run would pass for this one's.
	old, _ := filepath.Glob(filepath.Join(artifacts(t), "*.png"))
	for _, f := range old {
		os.Remove(f)
	}
	e := newEnv(t)

	// A finished run whose commit the page merges.
	e.server(testkit.DemoScript())
	e.ok("run", "-m", "Write hello.py.", "--name", "done", "-y")
	done := e.onlyRun().ID

	addr := freeAddr(t)
	ui := startBrowserUI(t, e, addr)
	b := newBrowser(t, chromium)

	// A browser without the printed URL's token gets no page and no
	// terminal: the UI's own origin, so only the missing cookie refuses it.
	t.Run("NoToken", func(t *testing.T) {
		anon := b.incognito(t)
		anon.do(chromedp.Navigate(ui.base + "/"))
		anon.waitJS("the refusal page", `document.readyState === "complete"`, 10*time.Second)
		if anon.evalBool(`!!document.querySelector("#runs, #main")`) {
			anon.shot("no-token")
			t.Fatalf("without the token the dashboard was served:\n%s", anon.bodyText())
		}
		if body := anon.bodyText(); !strings.Contains(body, "airlock ui") {
			t.Errorf("the refusal does not say to open the printed URL:\n%s", body)
		}
		res := anon.wsProbe(ui.wsURL(done))
		if res != "refused" {
			t.Fatalf("a WebSocket without the token: %s, want refused", res)
		}
	})

	// Signing in: the printed URL sets the cookie and lands on the
	// dashboard, which lists the finished run.
	b.do(chromedp.Navigate(ui.url))
	b.waitJS("the finished run on the dashboard", fmt.Sprintf(
		`(() => { const r = document.querySelector('#runs tr[data-id=%q]'); return !!r && r.textContent.includes("succeeded"); })()`, done), 30*time.Second)
	if got := b.evalString(`location.pathname + location.search`); got != "/" {
		t.Errorf("after signing in the page is at %q, want / without the token", got)
	}

	// A running run: a commit whose subject carries markup and escapes,
	// then a log that keeps growing, then a long wait.
	hostile := `Fix <img src=x onerror=document.body.dataset.pwned=1> \033[31mred\033[0m`
	markup := `<img src=x onerror=document.body.dataset.pwned=1>`
	steps := []string{
		"sleep 6; echo warming up",
		// Denied by the proxy (no allow rule), which never dials it.
		"curl -sS -m 5 -o /dev/null http://blocked.test/; echo asked",
		fmt.Sprintf(`printf '%%s\n' '%s' > live.html && git add live.html && git commit -qm "$(printf '%s')"`, markup, hostile),
	}
	for i := 1; i <= 4; i++ {
		steps = append(steps, fmt.Sprintf("sleep 3; echo tick %d", i))
	}
	// Claude Code's Bash tool times a command out after two minutes, and
	// refuses a bare long sleep.
	for i := 0; i < 8; i++ {
		steps = append(steps, "timeout 100 tail -f /dev/null; echo waited")
	}
	e.server(testkit.BashScript("ui-live", steps...))
	live := strings.TrimSpace(e.ok("run", "-d", "-m", "Work slowly.", "--name", "live", "-y").stdout)

	t.Run("LiveDashboard", func(t *testing.T) {
		b := b.with(t)
		// The new run appears without a reload (the runs stream).
		b.waitJS("the new run on the dashboard", fmt.Sprintf(`!!document.querySelector('#runs tr[data-id=%q]')`, live), 30*time.Second)
	})

	b.do(chromedp.Navigate(ui.base + "/runs/" + live))
	t.Run("LogGrows", func(t *testing.T) {
		b := b.with(t)
		b.waitJS("the first transcript entries", `document.querySelectorAll("#transcript .entry").length > 0`, 90*time.Second)
		n := b.evalInt(`document.querySelectorAll("#transcript .entry").length`)
		b.waitJS("more transcript entries", fmt.Sprintf(`document.querySelectorAll("#transcript .entry").length > %d`, n), 90*time.Second)
		if st := b.evalString(`document.querySelector("#run-status").textContent`); st != "running" {
			t.Errorf("the run's status on its page is %q while its log grows, want running", st)
		}
	})

	t.Run("HostileCommitInert", func(t *testing.T) {
		b := b.with(t)
		b.waitJS("the new commit", `document.querySelectorAll("#commits li").length > 0`, 90*time.Second)
		// The commit arrived while the page was open: a toast says so.
		b.waitJS("the commit's toast", `[...document.querySelectorAll(".toast")].some(t => t.textContent.includes("onerror="))`, 10*time.Second)
		subject := b.evalString(`document.querySelector("#commits li .subject").textContent`)
		for _, want := range []string{"<img src=x onerror=document.body.dataset.pwned=1>", "\u241b[31mred"} {
			if !strings.Contains(subject, want) {
				t.Errorf("the subject is shown as %q, want it to contain %q as text", subject, want)
			}
		}
		if n := b.evalInt(`document.querySelectorAll("img").length`); n != 0 {
			t.Errorf("the page has %d img elements: markup from a commit subject was parsed", n)
		}
		if b.evalBool(`"pwned" in document.body.dataset`) {
			t.Error("a commit subject's onerror handler ran")
		}
		b.shotFile("run")
	})

	term := "/runs/" + live + "/terminal"
	b.do(chromedp.Navigate(ui.base + term))
	t.Run("TerminalEcho", func(t *testing.T) {
		b := b.with(t)
		b.waitTerminal()
		b.typeTerm("echo hi\n")
		b.waitScreen(func(s string) bool { return hasLine(s, "hi") }, "a line reading hi", 30*time.Second)
		// Colours reach the page past its CSP: xterm.js's palette is CSS it
		// makes at run time, which the page re-applies through the CSSOM.
		b.typeTerm(`printf '\033[31mRED-TEXT\033[0m plain\n'` + "\n")
		b.waitScreen(func(s string) bool { return hasLine(s, "RED-TEXT plain") }, "the coloured line", 30*time.Second)
		colours := b.evalString(`(() => {
			const spans = [...document.querySelectorAll("#terminal .xterm-rows span")];
			const red = spans.find(s => s.textContent === "RED-TEXT");
			const plain = spans.find(s => s.textContent.includes("plain"));
			return red && plain ? getComputedStyle(red).color + " / " + getComputedStyle(plain).color : "no spans";
		})()`)
		if c := strings.Split(colours, " / "); len(c) != 2 || c[0] == c[1] {
			t.Errorf("red text and plain text are %s: xterm.js's colours did not apply", colours)
		}
	})

	t.Run("TerminalResize", func(t *testing.T) {
		b := b.with(t)
		before := b.sttySize()
		cols := b.evalInt(`+document.querySelector("#terminal").dataset.cols`)
		b.resizeWindow(900, 560)
		b.waitJS("the terminal to fit the smaller window", fmt.Sprintf(`+document.querySelector("#terminal").dataset.cols < %d`, cols), 15*time.Second)
		wantCols := b.evalInt(`+document.querySelector("#terminal").dataset.cols`)
		deadline := time.Now().Add(20 * time.Second)
		for {
			after := b.sttySize()
			if after != before && strings.HasSuffix(after, " "+strconv.Itoa(wantCols)) {
				break
			}
			if time.Now().After(deadline) {
				b.shot("resize")
				t.Fatalf("stty size in the sandbox is %q after the window shrank (before %q), want %d columns", after, before, wantCols)
			}
			time.Sleep(time.Second)
		}
		b.resizeWindow(1280, 860)
	})

	t.Run("ReloadSameSession", func(t *testing.T) {
		b := b.with(t)
		// The marker is in the output only ($((6*7)) is 42 once run).
		b.typeTerm("clear; echo MARK-$((6*7))-X\n")
		b.waitScreen(func(s string) bool { return hasLine(s, "MARK-42-X") }, "the marker", 30*time.Second)
		b.do(chromedp.Reload())
		b.waitTerminal()
		b.waitScreen(func(s string) bool { return hasLine(s, "MARK-42-X") }, "the marker after a reload", 30*time.Second)
		b.shotFile("terminal")
	})

	// Two tabs on one session: what one types, the other shows.
	t.Run("SecondTab", func(t *testing.T) {
		b := b.with(t)
		ctx, cancel := chromedp.NewContext(b.ctx)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(ui.base+term)); err != nil {
			t.Fatal(err)
		}
		other := &tab{t: t, ctx: ctx}
		other.waitTerminal()
		other.typeTerm("echo OTHER-$((40+2))-TAB\n")
		b.waitScreen(func(s string) bool { return hasLine(s, "OTHER-42-TAB") }, "what the second tab typed", 30*time.Second)
	})

	// An interactive run's terminal is the agent's own TUI.
	t.Run("InteractiveTUI", func(t *testing.T) {
		b := b.with(t)
		e := e.in(t)
		e.server(testkit.ChatScript())
		shell := e.startShell("--name", "tui")
		b.do(chromedp.Navigate(ui.base + "/runs/" + shell + "/terminal"))
		b.waitTerminal()
		b.waitScreen(func(s string) bool { return strings.Contains(s, "bypass permissions") }, "the agent's prompt", time.Minute)
		b.typeTerm("What is the answer?\n")
		b.waitScreen(func(s string) bool { return strings.Contains(s, testkit.ChatAnswer) }, "the model's answer", time.Minute)
		b.shotFile("tui")
		e.ok("kill", shell)
	})

	// A page of another origin on this machine: the session cookie is
	// SameSite=Strict, but a different port is the same site, so the
	// browser sends it along; only the server's Origin check refuses.
	t.Run("ForeignOriginWebSocket", func(t *testing.T) {
		b := b.with(t)
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<!doctype html><title>elsewhere</title><p>another site</p>")
		}))
		defer evil.Close()
		b.do(chromedp.Navigate(evil.URL))
		if res := b.wsProbe(ui.wsURL(live)); res != "refused" {
			t.Fatalf("a WebSocket from %s: %s, want refused", evil.URL, res)
		}
	})

	t.Run("StopFromPage", func(t *testing.T) {
		b := b.with(t)
		b.do(chromedp.Navigate(ui.base + "/runs/" + live))
		b.waitJS("the run page", `document.querySelector("#run-status").textContent === "running"`, 30*time.Second)
		// The egress log marks the denied request.
		b.waitJS("the denied request in the egress log", `[...document.querySelectorAll("#egress tr.denied")].some(r => r.textContent.includes("blocked.test"))`, 30*time.Second)
		b.do(chromedp.Click(chromedp.CSS("#btn-stop"), chromedp.NodeVisible))
		b.waitJS("the run to stop", `document.querySelector("#run-status").textContent === "stopped"`, 2*time.Minute)
		// Its diff, now there is one, shows the markup the agent wrote as
		// highlighted text.
		b.waitJS("the diff of live.html", `!!document.querySelector('#diff details.file[data-path="live.html"]')`, time.Minute)
		code := b.evalString(`document.querySelector('#diff details.file[data-path="live.html"] td.code').textContent`)
		if !strings.Contains(code, markup) {
			t.Errorf("live.html's diff shows %q, want the markup as text", code)
		}
		if n := b.evalInt(`document.querySelectorAll("img").length`); n != 0 || b.evalBool(`"pwned" in document.body.dataset`) {
			t.Errorf("markup in a diff was parsed: %d img elements", n)
		}
		if n := b.evalInt(`document.querySelectorAll('#diff details.file[data-path="live.html"] span[class^="hljs-"]').length`); n == 0 {
			t.Error("live.html's diff has no highlighted tokens")
		}
		b.shotFile("stopped")
	})

	t.Run("MergeFromPage", func(t *testing.T) {
		b := b.with(t)
		e := e.in(t)
		b.do(chromedp.Navigate(ui.base + "/runs/" + done))
		b.waitJS("the diff", `!!document.querySelector('#diff details.file[data-path="hello.py"]')`, 30*time.Second)
		// Highlighted: the diff's code is split into highlight.js's tokens.
		if n := b.evalInt(`document.querySelectorAll('#diff details.file[data-path="hello.py"] span[class^="hljs-"]').length`); n == 0 {
			t.Error("hello.py's diff has no highlighted tokens")
		}
		b.shotFile("diff")
		dialogs := b.acceptDialogs()
		b.do(chromedp.Click(chromedp.CSS("#btn-merge"), chromedp.NodeVisible))
		b.waitJS("the merge's message", `!document.querySelector("#action-message").classList.contains("hidden") || !document.querySelector("#action-error").classList.contains("hidden")`, time.Minute)
		if msg := b.evalString(`document.querySelector("#action-error").textContent`); msg != "" {
			t.Fatalf("merge from the page: %s", msg)
		}
		if d := dialogs(); len(d) != 1 || !strings.Contains(d[0], "Merge") {
			t.Errorf("confirmations asked: %q, want one asking to merge", d)
		}
		if log := e.git("log", "--format=%s", "main"); !strings.Contains(log, "Add hello.py") {
			t.Fatalf("after merging from the page, main's log lacks the run's commit:\n%s", log)
		}
	})

	// A run started from the page, with a typed prompt (the server still
	// has the first model server's address: the demo script).
	t.Run("NewRunFromPage", func(t *testing.T) {
		b := b.with(t)
		b.do(chromedp.Navigate(ui.base + "/new"))
		b.do(chromedp.SendKeys(chromedp.CSS("#prompt"), "Write hello.py."), chromedp.SendKeys(chromedp.CSS("#name"), "fromweb"))
		b.do(chromedp.Click(chromedp.CSS("#start"), chromedp.NodeVisible))
		b.waitJS("the new run's page", `location.pathname.startsWith("/runs/fromweb-")`, time.Minute)
		b.waitJS("the run to succeed", `document.querySelector("#run-status")?.textContent === "succeeded"`, 3*time.Minute)
		// (hello.py is on main already, merged above: nothing to commit.)
		b.waitJS("its transcript", `document.querySelector("#transcript").textContent.includes("Hello from airlock")`, 30*time.Second)
	})

	// On a phone's screen the pages fit its width: wide tables and diffs
	// scroll by themselves, the page does not.
	t.Run("PhoneWidth", func(t *testing.T) {
		b := b.with(t)
		b.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		defer func() {
			if _, err := chromedp.Call(b.ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{}); err != nil {
				t.Fatal(err)
			}
		}()
		for _, path := range []string{"/", "/new", "/runs/" + live} {
			b.do(chromedp.Navigate(ui.base + path))
			b.waitJS("the page", `document.querySelector("#main").children.length > 0 && !!document.querySelector("h1")`, 30*time.Second)
			if path != "/new" {
				b.waitJS("its content", `!!document.querySelector("#runs tbody tr, #diff details.file")`, 30*time.Second)
			}
			// (Not innerWidth: a mobile browser zooms out to fit a page
			// wider than the screen.)
			if w := b.evalInt(`document.documentElement.scrollWidth`); w > 390 {
				b.shot("phone")
				t.Errorf("%s is %dpx wide on a phone's 390px screen", path, w)
			}
		}
		b.shotFile("phone-run")
	})

	// The page keeps working across a restart of the server: it says it is
	// reconnecting meanwhile, and then shows changes again (the session
	// secret is kept, so the cookie still holds; the printed token is new).
	t.Run("ServerRestart", func(t *testing.T) {
		b := b.with(t)
		e := e.in(t)
		b.do(chromedp.Navigate(ui.base + "/"))
		b.waitJS("the four runs listed", `document.querySelectorAll("#runs tbody tr").length === 4`, 30*time.Second)
		b.shotBody("dashboard")
		ui.stop()
		b.waitJS("the reconnecting badge", `!document.querySelector("#conn").classList.contains("hidden")`, 30*time.Second)
		ui = startBrowserUI(t, e, addr)
		b.waitJS("the badge to go", `document.querySelector("#conn").classList.contains("hidden")`, 60*time.Second)
		e.ok("rm", "-y", done)
		b.waitJS("the removed run to leave the list", fmt.Sprintf(`!document.querySelector('#runs tr[data-id=%q]')`, done), 30*time.Second)
	})
}

// freeAddr is a loopback address with a port free now, for a server that
// must come back on the same one.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// needChromium finds Debian's chromium: on CI its absence fails the test.
func needChromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (scripts/setup.sh installs Debian's chromium)")
	}
	t.Skip("chromium is not installed (scripts/setup.sh installs Debian's chromium)")
	return ""
}

// browserUI is a running `airlock ui` that the browser uses.
type browserUI struct {
	url  string // as printed, with the token
	base string // scheme://host:port
	stop func()
}

func (u browserUI) wsURL(id string) string {
	return "ws" + strings.TrimPrefix(u.base, "http") + "/api/runs/" + id + "/terminal?cols=80&rows=24"
}

func startBrowserUI(t *testing.T, e *env, addr string) browserUI {
	t.Helper()
	cmd := e.command(context.Background(), shared.bin, "ui", "--no-open", "--addr", addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &syncWriter{w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stopGroup(cmd, syscall.SIGINT, 10*time.Second)
			if t.Failed() {
				t.Logf("airlock ui's stderr:\n%s", tail(stderr.String(), 40))
			}
		})
	}
	t.Cleanup(stop)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "token=") {
				lines <- strings.TrimSpace(sc.Text())
			}
		}
	}()
	select {
	case line := <-lines:
		u, err := url.Parse(line)
		if err != nil || u.Query().Get("token") == "" {
			t.Fatalf("airlock ui printed %q, want a URL with a token", line)
		}
		return browserUI{url: line, base: u.Scheme + "://" + u.Host, stop: stop}
	case <-time.After(30 * time.Second):
		t.Fatalf("airlock ui printed no URL in 30s; stderr:\n%s", stderr.String())
	}
	return browserUI{}
}

type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// tab is one browser tab (or an incognito context's).
type tab struct {
	t   *testing.T
	ctx context.Context
	net *failedRequests
}

// failedRequests keeps the requests of a tab that got no answer, with
// Chromium's reason (net::ERR_...): a page's "Failed to fetch" does not say.
type failedRequests struct {
	mu     sync.Mutex
	urls   map[network.RequestID]string
	failed []string
}

// watchRequests records ctx's tab's failed requests from now on.
func watchRequests(t *testing.T, ctx context.Context) *failedRequests {
	f := &failedRequests{urls: map[network.RequestID]string{}}
	err := chromedp.Listen(ctx, func(ev any) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			f.urls[ev.RequestID] = ev.Request.URL
		case *network.EventLoadingFailed:
			if !ev.Canceled {
				f.failed = append(f.failed, fmt.Sprintf("%s %s: %s", time.Now().Format("15:04:05.000"), f.urls[ev.RequestID], ev.ErrorText))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// String is the failed requests, the last 10.
func (f *failedRequests) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failed) == 0 {
		return "none"
	}
	return strings.Join(f.failed[max(0, len(f.failed)-10):], "\n")
}

func newBrowser(t *testing.T, chromium string) *tab {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.WindowSize(1280, 860),
	)
	if os.Geteuid() == 0 {
		// Chromium's own sandbox (the renderer's namespaces and seccomp
		// jail) refuses to start as root; the page it loads is our own UI
		// on loopback, and the test's machine is a throwaway one.
		opts = append(opts, chromedp.NoSandbox)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, which lives as long as the
	// context it was given: this one, not a shorter one of do's.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return &tab{t: t, ctx: ctx, net: watchRequests(t, ctx)}
}

// with is the same tab, failing t (a subtest's) rather than its parent.
func (p *tab) with(t *testing.T) *tab { return &tab{t: t, ctx: p.ctx, net: p.net} }

// incognito is a new browser context: no cookies of the first.
func (p *tab) incognito(t *testing.T) *tab {
	ctx, cancel := chromedp.NewContext(p.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// As in newBrowser: the first action opens the tab for good.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	return &tab{t: t, ctx: ctx, net: watchRequests(t, ctx)}
}

func (p *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.shot("failed")
		p.t.Fatal(err)
	}
}

func evalJS[T any](p *tab, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func (p *tab) evalBool(expr string) bool     { p.t.Helper(); return evalJS[bool](p, expr) }
func (p *tab) evalString(expr string) string { p.t.Helper(); return evalJS[string](p, expr) }
func (p *tab) evalInt(expr string) int       { p.t.Helper(); return int(evalJS[float64](p, expr)) }

func (p *tab) bodyText() string {
	return evalJS[string](p, `document.body ? document.body.innerText : ""`)
}

// waitJS polls expr until it is true.
func (p *tab) waitJS(what, expr string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.shot("timeout")
			p.t.Fatalf("waited %s for %s (%s; %v); the page shows:\n%s\nrequests that failed:\n%s", timeout, what, expr, err, tail(p.bodyText(), 40), p.net)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// artifacts is where the screenshots go: $AIRLOCK_ARTIFACTS/ui, else
// test-artifacts/ui in the repository (ignored by git).
func artifacts(t *testing.T) string {
	dir := filepath.Join(repoRoot(), "test-artifacts", "ui")
	if d := os.Getenv("AIRLOCK_ARTIFACTS"); d != "" {
		dir = filepath.Join(d, "ui")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// shotFile saves a screenshot of the whole page as name.png, or fails.
func (p *tab) shotFile(name string) {
	p.t.Helper()
	if err := p.screenshot(name, chromedp.FullScreenshot(100)); err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
}

// shot saves a screenshot when something went wrong: best effort.
func (p *tab) shot(name string) {
	if err := p.screenshot(strings.NewReplacer("/", "-").Replace(p.t.Name())+"-"+name, chromedp.FullScreenshot(100)); err != nil {
		p.t.Logf("screenshot: %v", err)
	}
}

// shotBody saves a screenshot of the page's content only (for the README:
// no empty window below it).
func (p *tab) shotBody(name string) {
	p.t.Helper()
	if err := p.screenshot(name, chromedp.Screenshot(chromedp.CSS("body"))); err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
}

func (p *tab) screenshot(name string, shoot chromedp.Action[[]byte]) error {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, shoot)
	if err != nil {
		return err
	}
	path := filepath.Join(artifacts(p.t), name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		return err
	}
	p.t.Logf("screenshot: %s", path)
	return nil
}

// wsProbe opens a WebSocket from the page and says whether it opened.
func (p *tab) wsProbe(wsURL string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`new Promise((resolve) => {
		const ws = new WebSocket(%q);
		ws.binaryType = "arraybuffer";
		ws.onopen = () => { resolve("opened"); ws.close(); };
		ws.onclose = (e) => resolve("refused");
		setTimeout(() => resolve("no answer in 15s"), 15000);
	})`, wsURL), chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("WebSocket probe: %v", err)
	}
	return v
}

func (p *tab) waitTerminal() {
	p.t.Helper()
	p.waitJS("the terminal to connect", `document.querySelector("#terminal")?.dataset.connected === "true"`, 60*time.Second)
}

// typeTerm types keys into the terminal as a keyboard does: one keyDown
// carrying the key's text, then keyUp. (chromedp.KeyEvent sends the text
// in a separate char event, which reaches xterm.js even after it handled
// the keyDown, so every character would arrive twice.)
func (p *tab) typeTerm(keys string) {
	p.t.Helper()
	p.do(chromedp.Focus(chromedp.CSS(".xterm-helper-textarea")))
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	for _, r := range keys {
		var down, up *input.DispatchKeyEventParams
		for _, ev := range kb.Encode(r) {
			switch ev.Type {
			case kb.KeyDown:
				down = ev
			case kb.KeyChar:
				down.Text, down.UnmodifiedText = ev.Text, ev.UnmodifiedText
			case kb.KeyUp:
				up = ev
			}
		}
		if r == '\n' {
			down.Text, down.UnmodifiedText = "\r", "\r"
		}
		for _, ev := range []*input.DispatchKeyEventParams{down, up} {
			if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, *ev); err != nil {
				p.t.Fatalf("typing %q: %v", keys, err)
			}
		}
	}
}

const screenJS = `[...document.querySelectorAll("#terminal .xterm-rows > div")].map(d => d.textContent.replace(/\u00a0/g, " ").trimEnd()).join("\n")`

func (p *tab) screen() string { return evalJS[string](p, screenJS) }

func (p *tab) waitScreen(ok func(string) bool, what string, timeout time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := p.screen()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			p.shot("terminal")
			p.t.Fatalf("the terminal never showed %s; it shows:\n%s", what, s)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func hasLine(screen, want string) bool {
	for _, l := range strings.Split(screen, "\n") {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}

var sizeRE = regexp.MustCompile(`SZ-(\d+ \d+)-ZS`)

// sttySize types `stty size` into the browser's terminal and reads the
// sandbox's answer ("ROWS COLS") off the screen.
func (p *tab) sttySize() string {
	p.t.Helper()
	p.typeTerm("clear; echo SZ-$(stty size)-ZS\n")
	var got string
	p.waitScreen(func(s string) bool {
		m := sizeRE.FindStringSubmatch(s)
		if m != nil {
			got = m[1]
		}
		return m != nil
	}, "stty size's answer", 30*time.Second)
	return got
}

// resizeWindow resizes the browser's window, as a user drags its corner.
func (p *tab) resizeWindow(width, height int64) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	w, err := chromedp.Call(ctx, browser.GetWindowForTarget, browser.GetWindowForTargetParams{})
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetWindowBounds, browser.SetWindowBoundsParams{
		WindowID: w.WindowID, Bounds: &browser.Bounds{Width: width, Height: height, WindowState: browser.WindowStateNormal},
	}); err != nil {
		p.t.Fatal(err)
	}
}

// acceptDialogs accepts every confirm() from now on, and returns a func
// that lists their messages.
func (p *tab) acceptDialogs() func() []string {
	var mu sync.Mutex
	var msgs []string
	ctx, cancel := context.WithCancel(p.ctx)
	p.t.Cleanup(cancel)
	opening := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range opening {
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, ev.Message)
			mu.Unlock()
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), msgs...)
	}
}
