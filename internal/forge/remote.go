// Package forge opens pull requests on GitHub (and GitHub Enterprise) for
// a run's pushed branch: it reads which repository a git remote names and
// speaks GitHub's REST API with the user's token, on the host only.
package forge

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Repo is a GitHub repository as a git remote names it.
type Repo struct {
	Host  string // the remote's host name, without port: "github.com"
	Owner string
	Name  string
}

func (r Repo) String() string { return r.Owner + "/" + r.Name }

// ErrNotGitHub is returned (wrapped) for a remote URL that names no
// owner/repository on a host.
var ErrNotGitHub = errors.New("not a GitHub repository URL")

// ParseRemote reads the owner and repository from a remote URL in the forms
// git accepts for a hosted repository: https://host/o/r(.git),
// ssh://[user@]host[:port]/o/r(.git), git://host/o/r and the scp-like
// [user@]host:o/r(.git). Local paths, file:// URLs and anything with more or
// fewer than two path segments are errors.
func ParseRemote(raw string) (Repo, error) {
	s := strings.TrimSpace(raw)
	fail := func(why string) (Repo, error) {
		return Repo{}, fmt.Errorf("remote URL %q: %w: %s", raw, ErrNotGitHub, why)
	}
	if s == "" {
		return fail("it is empty")
	}
	var host, path string
	if i := strings.Index(s, "://"); i >= 0 {
		u, err := url.Parse(s)
		if err != nil {
			return fail(err.Error())
		}
		switch strings.ToLower(u.Scheme) {
		case "https", "http", "ssh", "git", "git+ssh", "ssh+git":
		default:
			return fail("scheme " + u.Scheme + " does not name a hosted repository (want https://, ssh:// or git@host:owner/repo)")
		}
		host, path = u.Hostname(), u.Path
	} else {
		// scp-like: [user@]host:path. A colon after a slash is a local
		// path (git's own rule), as is anything without a colon.
		colon := strings.Index(s, ":")
		if colon < 0 || strings.Contains(s[:colon], "/") {
			return fail("a local path, not a hosted repository")
		}
		host, path = s[:colon], s[colon+1:]
		if at := strings.LastIndex(host, "@"); at >= 0 {
			host = host[at+1:]
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if host == "" {
		return fail("it has no host")
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !validHost(host) {
		return fail(fmt.Sprintf("host %q is not a host name or IP address", host))
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), "/")
	path = strings.TrimSuffix(path, ".git")
	parts := strings.Split(path, "/")
	if len(parts) != 2 || !validName(parts[0]) || !validName(parts[1]) {
		return fail("want owner/repository after the host, got " + fmt.Sprintf("%q", path))
	}
	return Repo{Host: strings.ToLower(host), Owner: parts[0], Name: parts[1]}, nil
}

// validHost accepts DNS names and IP addresses: the host is named to
// `gh auth token --hostname` and in messages.
func validHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	if len(s) > 253 || strings.HasPrefix(s, "-") || strings.HasPrefix(s, ".") {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// validName accepts GitHub's owner and repository names: letters, digits,
// '-', '_' and '.', not "." or "..". Anything else would be spliced into
// the API's path.
func validName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 100 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}
