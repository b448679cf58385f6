package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// uiMarkup is what a hostile agent writes where the dashboard shows it: a
// script, an event handler and a terminal escape.
const uiMarkup = `<img src=x onerror=alert(1)><script>alert(1)</script>`

// TestHostileUIMarkup: an agent writes markup into its transcript and into
// a commit's subject and author name. The dashboard hands them to the page as
// JSON strings, with < and > escaped, labelled as JSON, never to be
// sniffed, under a CSP without inline script: in the stream as the commit
// lands, in the run's data, and in its transcript.
func TestHostileUIMarkup(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.BashScript("markup",
		"echo '"+uiMarkup+"'; sleep 8",
		"echo x > x.txt && git add x.txt && git -c user.name='"+uiMarkup+"' commit -qm '"+uiMarkup+"'",
		"echo committed; sleep 15"))
	s := startUI(t, e)
	id := strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "Mark it up.", "--name", "markup").stdout)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	evs := readEvents(ctx, t, s, "/api/runs/"+id+"/stream", func(ev sseEvent) bool { return ev.name == "commit" })
	last := evs[len(evs)-1]
	if last.name != "commit" {
		t.Fatalf("no commit event while the agent committed: %+v", evs)
	}
	var c struct{ Subject, Author string }
	// git itself drops < and > from names: the author keeps the rest.
	if err := json.Unmarshal([]byte(last.data), &c); err != nil || c.Subject != uiMarkup || !strings.Contains(c.Author, "onerror=alert(1)") {
		t.Errorf("commit event %s (%v): want the subject and author as written", last.data, err)
	}
	for _, ev := range evs {
		if strings.ContainsAny(ev.data, "<>") {
			t.Errorf("%s event with raw markup: %s", ev.name, ev.data)
		}
	}

	e.ok("wait", id)
	for _, path := range []string{"/api/runs/" + id, "/api/runs/" + id + "/transcript", "/api/runs/" + id + "/diff", "/api/runs"} {
		var v any
		raw := s.getJSON(path, &v) // checks the content type, nosniff and CSP
		if strings.ContainsAny(string(raw), "<>") {
			t.Errorf("GET %s: raw markup in the answer:\n%s", path, raw)
		}
	}
	var detail struct {
		Commits []struct{ Subject, Author string }
	}
	s.getJSON("/api/runs/"+id, &detail)
	if len(detail.Commits) != 1 || detail.Commits[0].Subject != uiMarkup {
		t.Errorf("commits %+v, want the one with the markup subject, as written", detail.Commits)
	}
	var tr struct{ Entries []struct{ Kind, Text string } }
	s.getJSON("/api/runs/"+id+"/transcript", &tr)
	found := false
	for _, en := range tr.Entries {
		found = found || (en.Kind == "tool_result" && strings.Contains(en.Text, uiMarkup))
	}
	if !found {
		t.Errorf("the markup the agent printed is not in the transcript as written: %+v", tr.Entries)
	}
}

// TestHostileUICrossSite: a page of another site in the user's browser (its
// requests carry no CSRF header and come from another origin), or one that
// rebinds its own name to 127.0.0.1 (its requests name its host), cannot
// merge a run's work into the user's branch.
func TestHostileUICrossSite(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.BashScript("crosssite", "echo evil > evil.txt && git add evil.txt && git commit -qm 'Add evil.txt'"))
	s := startUI(t, e)
	id := strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "Add evil.", "--name", "crosssite").stdout)
	e.ok("wait", id)
	port := s.base[strings.LastIndex(s.base, ":")+1:]
	attacks := []struct {
		name string
		mod  func(*http.Request)
		want int
	}{
		// A form or a no-cors fetch can send text/plain, and the
		// browser adds the cookie only if SameSite allows: assume it did.
		{"cross-site simple POST", func(r *http.Request) {
			r.Header.Set("Content-Type", "text/plain")
			r.Header.Del("X-Airlock-CSRF")
			r.Header.Set("Origin", "http://evil.example")
		}, 403},
		{"cross-site JSON POST (a preflight would be refused anyway)", func(r *http.Request) {
			r.Header.Set("Origin", "http://evil.example")
		}, 403},
		{"same-site POST without the CSRF header", func(r *http.Request) {
			r.Header.Del("X-Airlock-CSRF")
		}, 403},
		{"DNS rebinding: the attacker's name, our address", func(r *http.Request) {
			r.Host = "evil.example:" + port
			r.Header.Set("Origin", "http://evil.example:"+port)
		}, 403},
	}
	for _, a := range attacks {
		resp, data := s.do("POST", "/api/runs/"+id+"/merge", `{}`, a.mod)
		if resp.StatusCode != a.want {
			t.Errorf("%s: %d %s, want %d", a.name, resp.StatusCode, data, a.want)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: CORS allowed", a.name)
		}
	}
	if got := e.git("log", "-1", "--format=%s", "main"); got != "initial" {
		t.Fatalf("a refused request merged: main is at %q", got)
	}
	// Preflights get no CORS answer.
	resp, _ := s.do("OPTIONS", "/api/runs/"+id+"/merge", "", func(r *http.Request) {
		r.Header.Set("Origin", "http://evil.example")
		r.Header.Set("Access-Control-Request-Method", "POST")
	})
	if resp.StatusCode < 400 || resp.Header.Get("Access-Control-Allow-Origin") != "" || resp.Header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight answered %d %v", resp.StatusCode, resp.Header)
	}
}
