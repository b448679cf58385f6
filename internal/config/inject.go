package config

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/airlock-dev/airlock/internal/credentials"
	"github.com/airlock-dev/airlock/internal/egress"
)

// Inject is one [[egress.inject]] entry: a credential the egress proxy
// adds to the requests for a host, which the sandbox never holds.
type Inject struct {
	// Host is a host pattern, as in egress.allow (names only).
	Host string
	// Exactly one of: Header, "Name: template" ("Authorization: Bearer
	// {}"); Basic, "user:{}" for HTTP basic authentication; Query, the
	// name of a query parameter.
	Header string
	Basic  string
	Query  string
	// From is where the value comes from: env:NAME, file:PATH (made
	// absolute) or cmd:COMMAND (credentials.ParseSource).
	From string
	// PlaceholderEnv names a variable the sandbox gets holding the
	// placeholder, for tools that insist on a token of their own.
	PlaceholderEnv string
	// Source is where the entry was written, "path:line".
	Source string
}

// Render is what goes in the header (or the query parameter) for value.
func (in Inject) Render(value string) (name, rendered string) {
	switch {
	case in.Query != "":
		return in.Query, value
	case in.Basic != "":
		return "Authorization", "Basic " + b64(strings.Replace(in.Basic, "{}", value, 1))
	}
	name, tmpl, _ := strings.Cut(in.Header, ":")
	return strings.TrimSpace(name), strings.Replace(strings.TrimSpace(tmpl), "{}", value, 1)
}

// Where says what the entry sets, for people.
func (in Inject) Where() string {
	switch {
	case in.Query != "":
		return "query " + in.Query + "={}"
	case in.Basic != "":
		return "basic " + in.Basic
	}
	return "header " + in.Header
}

const injectKey = "egress.inject"

var injectFields = []string{"basic", "from", "header", "host", "placeholder_env", "query"}

// takeInjects removes [[egress.inject]] from a decoded file and parses its
// entries; project says the file is the repository's own, which may not
// name file: or cmd: sources.
func takeInjects(doc map[string]any, data []byte, path, dir string, project bool, keyLine int) ([]Inject, []problem) {
	eg, _ := doc["egress"].(map[string]any)
	raw, ok := eg["inject"]
	if !ok {
		return nil, nil
	}
	delete(eg, "inject")
	list, isList := raw.([]any)
	if !isList {
		return nil, []problem{{keyLine, fmt.Sprintf("%s must be an array of tables ([[%s]]), got %s", injectKey, injectKey, describe(raw))}}
	}
	lines := entryLines(data)
	var out []Inject
	var problems []problem
	for i, item := range list {
		line := keyLine
		if len(lines) == len(list) {
			line = lines[i]
		}
		in, errs := parseInject(item, dir, project)
		for _, e := range errs {
			problems = append(problems, problem{line, injectKey + ": " + e})
		}
		if len(errs) == 0 {
			in.Source = fmt.Sprintf("%s:%d", path, line)
			out = append(out, in)
		}
	}
	return out, problems
}

var entryRE = regexp.MustCompile(`^\s*\[\[\s*"?egress"?\s*\.\s*"?inject"?\s*\]\]`)

// entryLines are the lines of the [[egress.inject]] headers, in order.
func entryLines(data []byte) []int {
	var out []int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		if entryRE.Match(sc.Bytes()) {
			out = append(out, n)
		}
	}
	return out
}

func parseInject(item any, dir string, project bool) (Inject, []string) {
	table, ok := item.(map[string]any)
	if !ok {
		return Inject{}, []string{"each entry must be a table, got " + describe(item)}
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	str := map[string]string{}
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, isStr := table[k].(string)
		switch {
		case !contains(injectFields, k):
			fail("unknown key %q; an entry has: %s", k, strings.Join(injectFields, ", "))
		case !isStr:
			fail("%s must be text, got %s", k, describe(table[k]))
		default:
			str[k] = v
		}
	}
	in := Inject{Host: str["host"], Header: str["header"], Basic: str["basic"], Query: str["query"],
		From: str["from"], PlaceholderEnv: str["placeholder_env"]}

	if in.Host == "" {
		fail("host is missing: the host pattern the credential is for, such as \"registry.example.com\"")
	} else if r, err := egress.ParseRule(in.Host, ""); err != nil {
		fail("host: %v", err)
	} else if _, isIP := ipLiteral(r.Pattern); isIP {
		fail("host %q: an injection needs a host name (the proxy intercepts TLS by name), not an IP address", in.Host)
	}

	set := 0
	for _, v := range []string{in.Header, in.Basic, in.Query} {
		if v != "" {
			set++
		}
	}
	switch {
	case set != 1:
		fail("give exactly one of header (\"Authorization: Bearer {}\"), basic (\"user:{}\") or query (a parameter name)")
	case in.Header != "":
		name, tmpl, ok := strings.Cut(in.Header, ":")
		name = strings.TrimSpace(name)
		switch {
		case !ok || !tokenRE.MatchString(name):
			fail("header %q: write it as \"Name: template\", such as \"Authorization: Bearer {}\"", in.Header)
		case forbiddenHeader(name):
			fail("header %q: airlock does not set %s", in.Header, name)
		case strings.Count(tmpl, "{}") != 1:
			fail("header %q: the template must have one {} where the secret goes, such as \"Authorization: Bearer {}\"", in.Header)
		case strings.ContainsAny(tmpl, "\r\n\x00"):
			fail("header %q: must be one line", in.Header)
		}
	case in.Basic != "":
		if strings.Count(in.Basic, "{}") != 1 || !strings.Contains(in.Basic, ":") || strings.ContainsAny(in.Basic, "\r\n\x00") {
			fail("basic %q: write user:{} (the secret as password), such as \"x-access-token:{}\"", in.Basic)
		}
	case in.Query != "":
		if !queryRE.MatchString(in.Query) {
			fail("query %q: give the parameter's name, such as \"access_token\"", in.Query)
		}
	}

	if in.From == "" {
		fail("from is missing: where the value comes from, env:NAME, file:PATH or cmd:COMMAND")
	} else if scheme, rest, err := credentials.ParseSource(in.From); err != nil {
		fail("from: %v", err)
	} else if project {
		// Even env: would let a repository send the user's secrets to
		// a host it allows itself.
		fail("a repository's own config may not inject credentials: it decides which of your secrets go to which host, so write this entry in your user config (~/.config/airlock/config.toml)")
	} else if scheme == credentials.SchemeFile {
		switch {
		case strings.HasPrefix(rest, "~"):
			fail("from %q: ~ is not expanded; use an absolute path or one relative to this file", in.From)
		default:
			p, err := resolvePath(dir, rest)
			if err != nil {
				fail("from: %v", err)
			}
			in.From = credentials.SchemeFile + ":" + p
		}
	}

	if in.PlaceholderEnv != "" && !envNameRE.MatchString(in.PlaceholderEnv) {
		fail("placeholder_env %q is not an environment variable name", in.PlaceholderEnv)
	}
	return in, errs
}

var (
	tokenRE   = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	queryRE   = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// forbiddenHeader are headers that frame or route the request, or are the
// proxy's own.
func forbiddenHeader(name string) bool {
	n := strings.ToLower(name)
	if strings.HasPrefix(n, "proxy-") {
		return true
	}
	return contains([]string{"host", "content-length", "transfer-encoding", "connection", "upgrade", "te",
		"trailer", "keep-alive", "expect"}, n)
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func ipLiteral(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	return a, err == nil
}
