package forge_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/forge"
	"github.com/airlock-dev/airlock/internal/testkit"
)

func TestParseRemote(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want forge.Repo
		err  string
	}{
		{in: "https://github.com/octo/hello.git", want: forge.Repo{Host: "github.com", Owner: "octo", Name: "hello"}},
		{in: "https://github.com/octo/hello", want: forge.Repo{Host: "github.com", Owner: "octo", Name: "hello"}},
		{in: "https://github.com/octo/hello/", want: forge.Repo{Host: "github.com", Owner: "octo", Name: "hello"}},
		{in: "https://user:pw@GitHub.com:443/octo/hello.js.git", want: forge.Repo{Host: "github.com", Owner: "octo", Name: "hello.js"}},
		{in: "git@github.com:octo/hello.git", want: forge.Repo{Host: "github.com", Owner: "octo", Name: "hello"}},
		{in: "github.com:octo/hello", want: forge.Repo{Host: "github.com", Owner: "octo", Name: "hello"}},
		{in: "ssh://git@github.com/octo/hello.git", want: forge.Repo{Host: "github.com", Owner: "octo", Name: "hello"}},
		{in: "ssh://git@ssh.github.com:443/octo/hello.git", want: forge.Repo{Host: "ssh.github.com", Owner: "octo", Name: "hello"}},
		{in: "ssh://git@[::1]:2222/octo/hello.git", want: forge.Repo{Host: "::1", Owner: "octo", Name: "hello"}},
		{in: "git://ghe.example.com/team/svc", want: forge.Repo{Host: "ghe.example.com", Owner: "team", Name: "svc"}},
		{in: "http://127.0.0.1:8080/o/r.git", want: forge.Repo{Host: "127.0.0.1", Owner: "o", Name: "r"}},
		{in: "/srv/git/hello.git", err: "a local path"},
		{in: "./hello", err: "a local path"},
		{in: "file:///srv/git/o/r.git", err: "scheme file"},
		{in: "https://github.com/octo", err: "want owner/repository"},
		{in: "https://gitlab.com/group/sub/repo.git", err: "want owner/repository"},
		{in: "git@github.com:octo/hel lo.git", err: "want owner/repository"},
		{in: "https://github.com/octo/..", err: "want owner/repository"},
		{in: "https://github.com/octo/r%3Fx", err: "want owner/repository"},
		{in: "", err: "empty"},
		{in: "git@$(touch x):o/r.git", err: "is not a host name"},
		{in: "git@-oProxyCommand=x:o/r.git", err: "is not a host name"},
	} {
		got, err := forge.ParseRemote(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, forge.ErrNotGitHub) {
				t.Errorf("ParseRemote(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRemote(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseAPIURL(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "https://api.github.com", want: "https://api.github.com"},
		{in: "https://ghe.example.com/api/v3/", want: "https://ghe.example.com/api/v3"},
		{in: "http://127.0.0.1:9999", want: "http://127.0.0.1:9999"},
		{in: "http://[::1]:9999/api/v3", want: "http://[::1]:9999/api/v3"},
		{in: "http://ghe.example.com/api/v3", err: "in the clear"},
		{in: "ftp://ghe.example.com", err: "want https"},
		{in: "https://u:p@ghe.example.com", err: "no user"},
		{in: "https://ghe.example.com?x=1", err: "no user, query"},
		{in: "ghe.example.com", err: "want https://HOST"},
	} {
		u, err := forge.ParseAPIURL(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseAPIURL(%q) = %v, %v; want an error containing %q", tc.in, u, err, tc.err)
		case tc.err == "" && (err != nil || u.String() != tc.want):
			t.Errorf("ParseAPIURL(%q) = %v, %v; want %s", tc.in, u, err, tc.want)
		}
	}
}

func TestServes(t *testing.T) {
	gh, _ := url.Parse(forge.DefaultAPI)
	ghe, _ := url.Parse("https://ghe.example.com/api/v3")
	for _, tc := range []struct {
		api  *url.URL
		host string
		ok   bool
	}{
		{gh, "github.com", true},
		{gh, "ssh.github.com", true},
		{gh, "gitlab.com", false},
		{gh, "ghe.example.com", false},
		{ghe, "ghe.example.com", true},
		{ghe, "github.com", false},
	} {
		err := forge.Serves(tc.api, forge.Repo{Host: tc.host, Owner: "o", Name: "r"})
		if (err == nil) != tc.ok {
			t.Errorf("Serves(%s, %s) = %v, want ok=%v", tc.api, tc.host, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "api_url") {
			t.Errorf("Serves error does not say how to configure GitHub Enterprise: %v", err)
		}
	}
}

func startGitHub(t *testing.T, opts testkit.GitHubOptions) (*testkit.GitHubServer, *url.URL) {
	t.Helper()
	srv := testkit.NewGitHubServer(opts)
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	u, err := forge.ParseAPIURL(base)
	if err != nil {
		t.Fatal(err)
	}
	return srv, u
}

func TestCreatePR(t *testing.T) {
	for _, prefix := range []string{"", "/api/v3"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			srv, api := startGitHub(t, testkit.GitHubOptions{Token: "ghp_good", Repos: []string{"octo/hello"}, Prefix: prefix})
			c := &forge.Client{HTTP: &http.Client{}, API: api, Token: "ghp_good", UserAgent: "airlock-test"}
			repo := forge.Repo{Host: "127.0.0.1", Owner: "octo", Name: "hello"}
			in := forge.NewPR{Title: "Add hello", Body: "body", Head: "airlock/x", Base: "main", Draft: true}
			pr, err := c.CreatePR(context.Background(), repo, in)
			if err != nil {
				t.Fatal(err)
			}
			if pr.Number != 1 || !strings.HasSuffix(pr.URL, "/octo/hello/pull/1") {
				t.Errorf("PR = %+v", pr)
			}
			reqs := srv.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != "POST" || r.Path != prefix+"/repos/octo/hello/pulls" {
				t.Errorf("request %s %s", r.Method, r.Path)
			}
			if got := r.Headers.Get("Authorization"); got != "Bearer ghp_good" {
				t.Errorf("Authorization = %q", got)
			}
			var sent forge.NewPR
			if err := json.Unmarshal(r.Body, &sent); err != nil || sent != in {
				t.Errorf("sent %+v (%v), want %+v", sent, err, in)
			}

			// The same head again: GitHub's 422, in its own words.
			_, err = c.CreatePR(context.Background(), repo, in)
			var apiErr *forge.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != 422 || !strings.Contains(err.Error(), "A pull request already exists for octo:airlock/x.") {
				t.Errorf("duplicate: %v", err)
			}
		})
	}
}

func TestCreatePRErrors(t *testing.T) {
	_, api := startGitHub(t, testkit.GitHubOptions{Token: "ghp_good", Repos: []string{"octo/hello"}})
	pr := forge.NewPR{Title: "t", Head: "h", Base: "main"}
	for _, tc := range []struct {
		name, token string
		repo        forge.Repo
		pr          forge.NewPR
		status      int
		want        string
	}{
		{"bad token", "ghp_bad", forge.Repo{Owner: "octo", Name: "hello"}, pr, 401, "GitHub answered 401 Bad credentials"},
		{"no repo", "ghp_good", forge.Repo{Owner: "octo", Name: "nope"}, pr, 404, "GitHub answered 404 Not Found"},
		{"no title", "ghp_good", forge.Repo{Owner: "octo", Name: "hello"}, forge.NewPR{Head: "h", Base: "main"}, 422, "Validation Failed: title missing_field"},
	} {
		c := &forge.Client{API: api, Token: tc.token, UserAgent: "airlock-test"}
		_, err := c.CreatePR(context.Background(), tc.repo, tc.pr)
		var apiErr *forge.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != tc.status || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %d %q", tc.name, err, tc.status, tc.want)
		}
	}
}

func TestInertBlock(t *testing.T) {
	in := "Done \x1b]8;;http://evil\x07link\x1b]8;;\x07 @octocat\n```\n<img src=x onerror=alert(1)>\n````\nfixes #1\u202e"
	got := forge.InertBlock(in)
	if strings.ContainsAny(got, "\x1b\x07\u202e") {
		t.Errorf("escapes survive: %q", got)
	}
	lines := strings.Split(got, "\n")
	open, closing := lines[0], lines[len(lines)-1]
	if open != "`````text" || closing != "`````" {
		t.Errorf("fence %q ... %q: want one longer than the text's longest run of backticks", open, closing)
	}
	// Nothing inside can close the fence.
	for _, l := range lines[1 : len(lines)-1] {
		if strings.HasPrefix(strings.TrimSpace(l), "`````") {
			t.Errorf("line %q closes the fence", l)
		}
	}
	if !strings.Contains(got, "@octocat") || !strings.Contains(got, "<img src=x") {
		t.Errorf("text lost: %q", got)
	}
	if big := forge.InertBlock(strings.Repeat("é", 40000)); len(big) > 61000 || !strings.Contains(big, "cut by airlock") {
		t.Errorf("a long summary is not cut: %d bytes", len(big))
	}
}

func TestTitle(t *testing.T) {
	for in, want := range map[string]string{
		"fix-auth":                       "fix-auth",
		"\n\n# Fix the login\nmore text": "Fix the login",
		"a\x1b[31mred\x1b[0m":            "ared",
		strings.Repeat("x", 300):         strings.Repeat("x", 199) + "…",
		"":                               "",
	} {
		if got := forge.Title(in); got != want {
			t.Errorf("Title(%q) = %q, want %q", in, got, want)
		}
	}
}
