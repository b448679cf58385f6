package testkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// GitHubOptions configure a scripted GitHub REST API.
type GitHubOptions struct {
	// Token is the only token accepted, as "Authorization: Bearer T" or
	// "Authorization: token T" (both are GitHub's).
	Token string
	// Repos are the repositories that exist, "owner/name"; others are 404.
	Repos []string
	// Prefix is where the API is mounted: "" for github.com's layout,
	// "/api/v3" for GitHub Enterprise Server's.
	Prefix string
	// HeadExists, if set, says whether a branch exists in a repository, as
	// GitHub checks a pull request's head: false is GitHub's 422.
	HeadExists func(repo, branch string) bool
}

// GitHubPull is a pull request the scripted GitHub API opened.
type GitHubPull struct {
	Repo   string // owner/name
	Number int
	Title  string
	Body   string
	Head   string
	Base   string
	Draft  bool
	URL    string
	Token  string // the token it was opened with
}

// GitHubServer is a scripted GitHub REST API: POST
// /repos/{owner}/{repo}/pulls with the real request and answer shapes.
// It is stricter than GitHub in one way: it wants the Accept header GitHub
// documents (application/vnd.github+json), which GitHub only recommends.
type GitHubServer struct {
	serving
	opts GitHubOptions

	mu       sync.Mutex
	base     string // the URL it serves on, for html_url
	requests []Request
	pulls    []GitHubPull
}

// NewGitHubServer returns a server with opts.
func NewGitHubServer(opts GitHubOptions) *GitHubServer {
	return &GitHubServer{opts: opts}
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves until Close. It
// returns the API's base URL: the server's URL plus Prefix.
func (s *GitHubServer) Start(addr string) (string, error) {
	u, err := s.start(addr, "GitHub API server", s)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.base = u
	s.mu.Unlock()
	return u + s.opts.Prefix, nil
}

// Requests returns every request seen so far, oldest first.
func (s *GitHubServer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Pulls returns the pull requests opened so far, oldest first.
func (s *GitHubServer) Pulls() []GitHubPull {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]GitHubPull(nil), s.pulls...)
}

const githubDocs = "https://docs.github.com/rest"

type githubError struct {
	Message string              `json:"message"`
	Errors  []map[string]string `json:"errors,omitempty"`
	Docs    string              `json:"documentation_url"`
	Status  string              `json:"status"`
}

func writeGitHub(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func githubFail(w http.ResponseWriter, status int, msg string, errs ...map[string]string) {
	writeGitHub(w, status, githubError{Message: msg, Errors: errs, Docs: githubDocs, Status: fmt.Sprint(status)})
}

// ServeHTTP answers the API.
func (s *GitHubServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest(w, r)
	if err != nil {
		githubFail(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.mu.Unlock()

	if r.Header.Get("User-Agent") == "" {
		githubFail(w, http.StatusForbidden, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header")
		return
	}
	token, ok := githubToken(r.Header.Get("Authorization"))
	switch {
	case !ok:
		githubFail(w, http.StatusUnauthorized, "Requires authentication")
		return
	case token != s.opts.Token:
		githubFail(w, http.StatusUnauthorized, "Bad credentials")
		return
	}
	if a := r.Header.Get("Accept"); !strings.Contains(a, "application/vnd.github+json") && !strings.Contains(a, "application/vnd.github.v3+json") {
		githubFail(w, http.StatusBadRequest, "scripted GitHub: Accept must be application/vnd.github+json, got "+fmt.Sprintf("%q", a))
		return
	}
	path, found := strings.CutPrefix(r.URL.Path, s.opts.Prefix+"/repos/")
	owner, rest, _ := strings.Cut(path, "/")
	name, endpoint, _ := strings.Cut(rest, "/")
	repo := owner + "/" + name
	if !found || endpoint != "pulls" || !s.knows(repo) {
		githubFail(w, http.StatusNotFound, "Not Found")
		return
	}
	if r.Method != http.MethodPost {
		githubFail(w, http.StatusMethodNotAllowed, "scripted GitHub: only POST "+r.URL.Path)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		githubFail(w, http.StatusUnsupportedMediaType, "Unsupported 'Content-Type': "+fmt.Sprintf("%q", ct))
		return
	}
	var in struct {
		Title *string `json:"title"`
		Body  *string `json:"body"`
		Head  *string `json:"head"`
		Base  *string `json:"base"`
		Draft *bool   `json:"draft"`
	}
	if err := json.Unmarshal(req.Body, &in); err != nil {
		githubFail(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	for field, v := range map[string]*string{"title": in.Title, "head": in.Head, "base": in.Base} {
		if v == nil || *v == "" {
			githubFail(w, http.StatusUnprocessableEntity, "Validation Failed", map[string]string{"resource": "PullRequest", "field": field, "code": "missing_field"})
			return
		}
	}
	if s.opts.HeadExists != nil && !s.opts.HeadExists(repo, *in.Head) {
		githubFail(w, http.StatusUnprocessableEntity, "Validation Failed", map[string]string{"resource": "PullRequest", "field": "head", "code": "invalid"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pulls {
		if p.Repo == repo && p.Head == *in.Head && p.Base == *in.Base {
			githubFail(w, http.StatusUnprocessableEntity, "Validation Failed", map[string]string{"resource": "PullRequest", "code": "custom",
				"message": fmt.Sprintf("A pull request already exists for %s:%s.", owner, *in.Head)})
			return
		}
	}
	p := GitHubPull{Repo: repo, Number: len(s.pulls) + 1, Title: *in.Title, Head: *in.Head, Base: *in.Base, Token: token}
	if in.Body != nil {
		p.Body = *in.Body
	}
	if in.Draft != nil {
		p.Draft = *in.Draft
	}
	p.URL = fmt.Sprintf("%s/%s/pull/%d", s.base, repo, p.Number)
	s.pulls = append(s.pulls, p)
	writeGitHub(w, http.StatusCreated, map[string]any{
		"url":      fmt.Sprintf("%s%s/repos/%s/pulls/%d", s.base, s.opts.Prefix, repo, p.Number),
		"html_url": p.URL,
		"number":   p.Number,
		"state":    "open",
		"title":    p.Title,
		"body":     p.Body,
		"draft":    p.Draft,
		"head":     map[string]any{"ref": p.Head, "label": owner + ":" + p.Head},
		"base":     map[string]any{"ref": p.Base, "label": owner + ":" + p.Base},
	})
}

func (s *GitHubServer) knows(repo string) bool {
	for _, r := range s.opts.Repos {
		if r == repo {
			return true
		}
	}
	return false
}

// githubToken reads "Bearer T" or "token T".
func githubToken(h string) (string, bool) {
	for _, scheme := range []string{"Bearer ", "token "} {
		if t, ok := strings.CutPrefix(h, scheme); ok && t != "" {
			return t, true
		}
	}
	return "", false
}
