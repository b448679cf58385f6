package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// bareRemote makes a bare repository and adds it to the test's
// repository as remote name, under url (a url.<bare>.insteadOf rewrite
// when url is not the path itself: pr reads owner/repo from the URL, git
// pushes to the bare repository).
func bareRemote(t *testing.T, e *env, name, url string) string {
	t.Helper()
	bare := filepath.Join(e.tempDir(), "remote.git")
	if out, err := exec.Command("git", "init", "-q", "--bare", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init --bare: %v\n%s", err, out)
	}
	e.chown(bare)
	if url == "" {
		url = bare
	}
	e.git("remote", "add", name, url)
	if url != bare {
		e.git("config", "url."+bare+".insteadOf", url)
	}
	return bare
}

// remoteRefs lists a bare repository's refs, "sha ref" per line.
func remoteRefs(t *testing.T, bare string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", bare, "for-each-ref", "--format=%(objectname) %(refname)").CombinedOutput()
	if err != nil {
		t.Fatalf("for-each-ref: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func onlyRun(t *testing.T, e *env) store.Run {
	t.Helper()
	runs := e.runs()
	if len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
	return runs[0]
}

// push brings a finished run's branch, from the user's repository, to a
// remote: the commit arrives, a second push is fine, an unknown remote is
// one clear error and changes nothing.
func TestPushToBareRepository(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.DemoScript())
	e.ok("run", "-m", "Write hello.py.", "--name", "hello")
	r := onlyRun(t, e)
	bare := bareRemote(t, e, "origin", "")

	res := e.ok("push")
	want := r.Head + " refs/heads/airlock/" + r.ID
	if got := remoteRefs(t, bare); got != want {
		t.Fatalf("remote refs after push:\n%s\nwant\n%s", got, want)
	}
	if subj, _ := exec.Command("git", "-C", bare, "log", "-1", "--format=%s", "airlock/"+r.ID).Output(); strings.TrimSpace(string(subj)) != "Add hello.py" {
		t.Errorf("the remote branch's commit is %q, want the agent's", subj)
	}
	for _, s := range []string{"Pushed airlock/" + r.ID, "to origin (" + bare + ")", "new branch"} {
		if !strings.Contains(res.stderr, s) {
			t.Errorf("push does not say %q:\n%s", s, res.stderr)
		}
	}

	if res := e.ok("push", r.ID); !strings.Contains(res.stderr, "up to date") {
		t.Errorf("second push: %s", res.stderr)
	}
	res = e.ok("push", "--branch", "feature/hello")
	if !strings.Contains(remoteRefs(t, bare), r.Head+" refs/heads/feature/hello") || !strings.Contains(res.stderr, "as feature/hello") {
		t.Errorf("push --branch: %s\n%s", res.stderr, remoteRefs(t, bare))
	}

	before := remoteRefs(t, bare)
	bad := e.airlock("push", "--remote", "upstream")
	if bad.code != 1 || !strings.Contains(bad.stderr, `no such remote "upstream" in `+e.repo+" (it has origin)") ||
		strings.Count(strings.TrimSpace(bad.stderr), "\n") != 0 {
		t.Errorf("push to an unknown remote: exit %d, want 1 and one line naming it:\n%s", bad.code, bad.stderr)
	}
	// A remote that refuses (it does not exist): one error naming it.
	e.git("remote", "add", "gone", filepath.Join(e.tempDir(), "missing.git"))
	bad = e.airlock("push", "--remote", "gone")
	if bad.code != 1 || !strings.Contains(bad.stderr, "to gone (") || !strings.Contains(bad.stderr, "missing.git") {
		t.Errorf("push to a remote that is not there: exit %d:\n%s", bad.code, bad.stderr)
	}
	if after := remoteRefs(t, bare); after != before {
		t.Errorf("a failed push changed the remote:\n%s\nwas\n%s", after, before)
	}
}

// hostileSummary is an agent's final text that tries everything on a
// terminal and on GitHub: an OSC title and hyperlink, a bell, a bidi
// override, mentions, HTML, an image, a closing keyword, and a line of
// backticks to break out of a code fence.
const hostileSummary = "Done \x1b]0;pwned\x07\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07 \u202eevil\n" +
	"@octocat @org/team <img src=https://evil.example/track.png> <script>alert(1)</script>\n" +
	"````\n# Fixes #1\n[link](https://evil.example/)"

// githubRemote starts a scripted GitHub API (GitHub Enterprise's layout,
// on loopback) that knows octo/hello and accepts the token ghp_e2e_token,
// points the user config's github.api_url at it, and adds remote origin
// http://HOST/octo/hello.git, which git pushes to a bare repository.
func githubRemote(t *testing.T, e *env) (*testkit.GitHubServer, string) {
	t.Helper()
	var bare string
	gh := testkit.NewGitHubServer(testkit.GitHubOptions{
		Token: "ghp_e2e_token", Repos: []string{"octo/hello"}, Prefix: "/api/v3",
		HeadExists: func(repo, branch string) bool {
			return exec.Command("git", "-C", bare, "rev-parse", "--verify", "-q", "refs/heads/"+branch).Run() == nil
		},
	})
	api, err := gh.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gh.Close() })
	host := strings.TrimPrefix(strings.TrimSuffix(api, "/api/v3"), "http://")
	bare = bareRemote(t, e, "origin", "http://"+host+"/octo/hello.git")
	userConfig(t, e, "[github]\napi_url = \""+api+"\"\n")
	return gh, bare
}

// pr pushes the run's branch and opens a pull request on the scripted
// GitHub API with the user's token; the agent's summary arrives inert; a
// second pr shows GitHub's 422; without a token nothing is pushed or sent.
func TestPROnScriptedGitHub(t *testing.T) {
	e := newEnv(t)
	s := testkit.DemoScript()
	s.FinalText = hostileSummary
	e.server(s)
	e.ok("run", "-m", "Write hello.py.", "--name", "hello-pr")
	r := onlyRun(t, e)

	gh, bare := githubRemote(t, e)
	model := e.extra

	// No token anywhere (and no gh on PATH): one clear error, nothing
	// pushed, nothing sent.
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(gitPath, filepath.Join(bin, "git")); err != nil {
		t.Fatal(err)
	}
	e.extra = append(append([]string{}, model...), "GH_TOKEN=", "GITHUB_TOKEN=", "PATH="+bin)
	res := e.airlock("pr")
	t.Logf("pr without a token: %s", res.stderr)
	if res.code != 1 || !strings.Contains(res.stderr, "GH_TOKEN and GITHUB_TOKEN are not set") || !strings.Contains(res.stderr, "gh auth token --hostname 127.0.0.1") {
		t.Errorf("pr without a token: exit %d, want 1 naming GH_TOKEN, GITHUB_TOKEN and gh:\n%s", res.code, res.stderr)
	}
	if refs := remoteRefs(t, bare); refs != "" || len(gh.Requests()) != 0 {
		t.Fatalf("pr without a token pushed or sent something: refs %q, %d requests", refs, len(gh.Requests()))
	}

	// A wrong token: GitHub's 401, naming where the token came from.
	e.extra = append(append([]string{}, model...), "GH_TOKEN=ghp_wrong", "GITHUB_TOKEN=")
	res = e.airlock("pr")
	if res.code != 1 || !strings.Contains(res.stderr, "GitHub answered 401 Bad credentials") || !strings.Contains(res.stderr, "the token from GH_TOKEN") {
		t.Errorf("pr with a bad token: exit %d:\n%s", res.code, res.stderr)
	}

	e.extra = append(append([]string{}, model...), "GH_TOKEN=", "GITHUB_TOKEN=ghp_e2e_token")
	res = e.ok("pr")
	pulls := gh.Pulls()
	if len(pulls) != 1 {
		t.Fatalf("%d pull requests opened, want 1", len(pulls))
	}
	p := pulls[0]
	if got := strings.TrimSpace(res.stdout); got != p.URL || !strings.HasSuffix(got, "/octo/hello/pull/1") {
		t.Errorf("pr printed %q, want the pull request's URL %q", got, p.URL)
	}
	if p.Head != "airlock/"+r.ID || p.Base != "main" || p.Title != "hello-pr" || p.Token != "ghp_e2e_token" || p.Draft {
		t.Errorf("pull request %+v: want head airlock/%s, base main, title hello-pr, GITHUB_TOKEN's token", p, r.ID)
	}
	if !strings.Contains(remoteRefs(t, bare), r.Head+" refs/heads/airlock/"+r.ID) {
		t.Errorf("pr did not push the branch first:\n%s", remoteRefs(t, bare))
	}
	t.Logf("pull request body:\n%s", p.Body)
	checkInertBody(t, p.Body)
	for _, s := range []string{"airlock run `" + r.ID + "`", "agent claude", "turns", "$"} {
		if !strings.Contains(p.Body, s) {
			t.Errorf("body does not carry %q:\n%s", s, p.Body)
		}
	}
	var sent map[string]any
	if reqs := gh.Requests(); len(reqs) < 2 || json.Unmarshal(reqs[len(reqs)-1].Body, &sent) != nil {
		t.Fatalf("requests: %+v", gh.Requests())
	}
	if strings.ContainsAny(res.stdout+res.stderr, "\x1b\x07\u202e") {
		t.Errorf("pr's output carries escapes: %q", res.stdout+res.stderr)
	}

	// The token was used on the host only: nothing airlock keeps, the
	// run's directory (what its sandbox had) included, holds it.
	filepath.WalkDir(e.state, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(path); strings.Contains(string(data), "ghp_e2e_token") {
				t.Errorf("%s holds the GitHub token", path)
			}
		}
		return nil
	})

	// Again: GitHub's 422 in its own words, exit 1.
	res = e.airlock("pr", "--title", "Again", "--draft")
	t.Logf("second pr: %s", res.stderr)
	if res.code != 1 || !strings.Contains(res.stderr, "A pull request already exists for octo:airlock/"+r.ID+".") {
		t.Errorf("second pr: exit %d:\n%s", res.code, res.stderr)
	}
	// Another base: a draft with the given title and body.
	e.git("branch", "develop")
	e.git("push", "-q", "origin", "develop")
	res = e.ok("pr", "--title", "Hello, reviewed", "--body", "Checked by hand.", "--draft", "--base", "develop")
	if pulls = gh.Pulls(); len(pulls) != 2 || pulls[1].Title != "Hello, reviewed" || pulls[1].Body != "Checked by hand." || !pulls[1].Draft || pulls[1].Base != "develop" {
		t.Errorf("pr --title --body --draft --base: %+v", pulls)
	}
}

// checkInertBody fails unless a pull request body carries the agent's
// words without escapes, control or bidi characters, and inside one
// code fence nothing in them closes.
func checkInertBody(t *testing.T, body string) {
	t.Helper()
	if strings.ContainsAny(body, "\x1b\x07\u202e") {
		t.Errorf("body carries escapes or bidi controls: %q", body)
	}
	lines := strings.Split(body, "\n")
	open := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "```") {
			open = i
			break
		}
	}
	if open < 0 {
		t.Fatalf("body has no fenced block:\n%s", body)
	}
	fence := strings.TrimSuffix(lines[open], "text")
	closeAt := -1
	for i := open + 1; i < len(lines); i++ {
		if strings.HasPrefix(strings.TrimSpace(lines[i]), fence) {
			closeAt = i
			break
		}
	}
	if closeAt < 0 {
		t.Fatalf("the fence is never closed:\n%s", body)
	}
	inside := strings.Join(lines[open+1:closeAt], "\n")
	for _, s := range []string{"@octocat", "<img src=", "<script>", "# Fixes #1", "````"} {
		if !strings.Contains(inside, s) {
			t.Errorf("%q is not inside the fence (closed at line %d):\n%s", s, closeAt, body)
		}
	}
	if rest := strings.Join(lines[closeAt+1:], "\n"); strings.Contains(rest, "@octocat") || strings.Contains(rest, "<img") {
		t.Errorf("agent text outside the fence:\n%s", rest)
	}
}
