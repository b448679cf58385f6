package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// DefaultAPI is GitHub's REST API; GitHub Enterprise Server has its own at
// https://HOST/api/v3.
const DefaultAPI = "https://api.github.com"

// maxResponse bounds what is read of an API answer.
const maxResponse = 1 << 20

// ParseAPIURL checks a GitHub API base URL: https, or plain http to a
// loopback address only (the token travels in it), with no query, fragment
// or credentials.
func ParseAPIURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("GitHub API URL %q: %w", s, err)
	}
	switch {
	case u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("GitHub API URL %q: want https://HOST[/PATH], such as %s or https://github.example.com/api/v3", s, DefaultAPI)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("GitHub API URL %q: no user, query or fragment, please: the token goes in a header", s)
	case u.Scheme == "https":
	case u.Scheme == "http" && loopback(u.Hostname()):
	case u.Scheme == "http":
		return nil, fmt.Errorf("GitHub API URL %q: plain http would send your token in the clear; use https (http is for loopback addresses only)", s)
	default:
		return nil, fmt.Errorf("GitHub API URL %q: scheme %q; want https", s, u.Scheme)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	return u, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serves reports, as an error, a remote on another host than the API's:
// a pull request would be opened on a different server than the one the
// branch was pushed to (and the token sent to it). github.com's API is
// api.github.com; GitHub Enterprise answers on the host itself
// (HOST/api/v3) or on api.HOST.
func Serves(api *url.URL, repo Repo) error {
	apiHost := strings.ToLower(api.Hostname())
	switch {
	case apiHost == "api.github.com" && (repo.Host == "github.com" || repo.Host == "ssh.github.com" || repo.Host == "www.github.com"):
		return nil
	case apiHost == repo.Host || apiHost == "api."+repo.Host:
		return nil
	}
	return fmt.Errorf("the remote is on %s, but pull requests go to the GitHub API at %s; for GitHub Enterprise set [github] api_url = \"https://%s/api/v3\" in your user config (docs/cli.md, Push and pull requests)",
		repo.Host, api.Redacted(), repo.Host)
}

// Client speaks GitHub's REST API with one token.
type Client struct {
	HTTP  *http.Client
	API   *url.URL // from ParseAPIURL
	Token string
	// UserAgent is sent with every request; GitHub refuses requests
	// without one.
	UserAgent string
}

// NewPR is a pull request to open.
type NewPR struct {
	Title string `json:"title"`
	Body  string `json:"body,omitempty"`
	Head  string `json:"head"`
	Base  string `json:"base"`
	Draft bool   `json:"draft,omitempty"`
}

// PR is an opened pull request.
type PR struct {
	Number int    `json:"number"`
	URL    string `json:"html_url"`
}

// APIError is an answer other than success, with GitHub's own words (made
// safe for a terminal: they come from a server).
type APIError struct {
	Status  int
	Message string   // GitHub's "message"
	Details []string // the "errors" entries' messages or codes
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("GitHub answered %d", e.Status)
	if e.Message != "" {
		msg += " " + e.Message
	}
	if len(e.Details) > 0 {
		msg += ": " + strings.Join(e.Details, "; ")
	}
	return msg
}

// CreatePR opens a pull request (POST /repos/{owner}/{repo}/pulls).
func (c *Client) CreatePR(ctx context.Context, repo Repo, pr NewPR) (PR, error) {
	var out PR
	if err := c.do(ctx, http.MethodPost, "/repos/"+repo.Owner+"/"+repo.Name+"/pulls", pr, &out); err != nil {
		return PR{}, fmt.Errorf("open a pull request on %s: %w", repo, err)
	}
	if out.URL == "" {
		return PR{}, fmt.Errorf("open a pull request on %s: GitHub's answer has no html_url", repo)
	}
	out.URL = untrusted.Line(out.URL)
	return out, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	u := *c.API
	u.Path = c.API.Path + path
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.UserAgent)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("read GitHub's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("GitHub's answer (%d) is not the JSON expected: %w", resp.StatusCode, err)
	}
	return nil
}

func apiError(status int, data []byte) *APIError {
	var e struct {
		Message string `json:"message"`
		Errors  []struct {
			Message string `json:"message"`
			Code    string `json:"code"`
			Field   string `json:"field"`
		} `json:"errors"`
	}
	out := &APIError{Status: status}
	if json.Unmarshal(data, &e) != nil {
		out.Message = untrusted.Line(http.StatusText(status))
		return out
	}
	out.Message = untrusted.Line(e.Message)
	for _, d := range e.Errors {
		switch {
		case d.Message != "":
			out.Details = append(out.Details, untrusted.Line(d.Message))
		case d.Code != "":
			out.Details = append(out.Details, untrusted.Line(strings.TrimSpace(d.Field+" "+d.Code)))
		}
	}
	return out
}
