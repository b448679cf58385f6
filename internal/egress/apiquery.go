package egress

import (
	"net/url"
	"strings"
)

// queryCredentials are the query parameters Google's APIs read a credential
// from (an API key, an OAuth token), whatever header also carries one. The
// proxy drops them from every model-API request: only the credential it
// injects itself may reach the upstream, never one the agent chose.
var queryCredentials = []string{"key", "access_token", "oauth_token"}

// isQueryCredential reports whether a query parameter's name (decoded) is
// one that carries a credential. The comparison ignores case and
// surrounding space, in case an upstream is as lenient.
func isQueryCredential(name string) bool {
	name = strings.TrimSpace(name)
	for _, c := range queryCredentials {
		if strings.EqualFold(name, c) {
			return true
		}
	}
	return false
}

// dropQueryCredentials removes credential parameters from u's query, and
// reports whether it found any. The query is rewritten only then: other
// requests go out with their query byte for byte as the agent sent it
// (httputil.ReverseProxy has already removed any unparsable parameter).
func dropQueryCredentials(u *url.URL) bool {
	if u.RawQuery == "" {
		return false
	}
	q, err := url.ParseQuery(u.RawQuery)
	found := false
	for name := range q {
		if isQueryCredential(name) {
			found = true
			delete(q, name)
		}
	}
	if found || err != nil {
		// A query that does not parse cleanly goes out as what parsed.
		u.RawQuery = q.Encode()
	}
	return found
}
