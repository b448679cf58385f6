package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
)

// Commit is one of a run's commits. Subject, Author and Stat are the
// agent's: raw, untrusted.
type Commit struct {
	SHA     string    `json:"sha"`
	Subject string    `json:"subject"`
	Author  string    `json:"author"`
	Time    time.Time `json:"time"`
	Stat    string    `json:"stat,omitempty"`
}

// Diff is a run's change against its base, per file.
type Diff struct {
	Stat  string     `json:"stat"`
	Files []FileDiff `json:"files"`
}

// FileDiff is one file's part of a Diff.
type FileDiff struct {
	Path      string `json:"path"`
	OldPath   string `json:"old_path,omitempty"`
	Status    string `json:"status"` // M, A, D or R
	Additions int    `json:"additions"`
	Deletions int    `json:"deletions"`
	Binary    bool   `json:"binary"`
	Patch     string `json:"patch"`
}

// EgressRecord is one entry of a run's egress log, as the page shows it.
type EgressRecord struct {
	Time     time.Time `json:"time"`
	Decision string    `json:"decision"` // allowed or denied
	Kind     string    `json:"kind,omitempty"`
	Host     string    `json:"host"`
	Port     int       `json:"port,omitempty"`
	Method   string    `json:"method,omitempty"`
	Path     string    `json:"path,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Addr     string    `json:"addr,omitempty"`
	Up       int64     `json:"bytes_up"`
	Down     int64     `json:"bytes_down"`
	Scan     string    `json:"scan,omitempty"`
}

// Entry is one rendered item of a transcript.
type Entry struct {
	Kind string `json:"kind"` // assistant, tool_use, tool_result, result, system, user, stderr
	Text string `json:"text"`
}

// Transcript is a piece of a run's transcript: Next is the offset to ask
// from next time.
type Transcript struct {
	Next    int64   `json:"next"`
	Entries []Entry `json:"entries"`
}

// Action is a POST on a run: its name and body.
type Action struct {
	Name   string `json:"-"`
	Squash bool   `json:"squash"`
	Remote string `json:"remote"`
	Branch string `json:"branch"`
	Title  string `json:"title"`
	Body   string `json:"body"`
	Draft  bool   `json:"draft"`
	Force  bool   `json:"force"`
}

// ActionResult is what an action did.
type ActionResult struct {
	Message string `json:"message"`
	URL     string `json:"url,omitempty"`
}

// NewRun is a run to start from the page.
type NewRun struct {
	Name       string  `json:"name"`
	Prompt     string  `json:"prompt"`
	PromptFile string  `json:"prompt_file"`
	Profile    string  `json:"profile"`
	Agent      string  `json:"agent"`
	MaxCostUSD float64 `json:"max_cost_usd"`
}

// NewChoices are what a new run may be started with.
type NewChoices struct {
	Prompts  []string `json:"prompts"`
	Profiles []string `json:"profiles"`
	Agents   []string `json:"agents"`
}

// HTTPError is an error with the status to answer it with.
type HTTPError struct {
	Status int
	Err    error
}

func (e *HTTPError) Error() string { return e.Err.Error() }
func (e *HTTPError) Unwrap() error { return e.Err }

// Errorf makes an HTTPError.
func Errorf(status int, format string, args ...any) error {
	return &HTTPError{Status: status, Err: fmt.Errorf(format, args...)}
}

// actions are the POSTs on a run.
var actions = map[string]bool{"stop": true, "kill": true, "merge": true, "push": true, "pr": true, "rm": true}

// validID is a run ID's shape (store IDs are name-based slugs with a
// random suffix): anything else never reaches the backend.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (s *Server) apiSession(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"csrf":         s.csrf(),
		"project":      s.opts.Backend.Project(),
		"all_projects": s.opts.AllProjects,
		"version":      s.opts.Version,
	})
}

func (s *Server) allRuns(r *http.Request) bool {
	return s.opts.AllProjects || r.URL.Query().Get("all") == "1"
}

func (s *Server) apiRuns(w http.ResponseWriter, r *http.Request) {
	runs, err := s.opts.Backend.Runs(r.Context(), s.allRuns(r))
	if err != nil {
		s.fail(w, err, http.StatusInternalServerError)
		return
	}
	if runs == nil {
		runs = []*store.Run{}
	}
	writeJSON(w, http.StatusOK, runs)
}

// runID is the request's run ID, checked for shape; it answers 404 itself
// when it is not one.
func runID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !validID.MatchString(id) {
		writeError(w, http.StatusNotFound, "no such run: "+strconv.Quote(id))
		return "", false
	}
	return id, true
}

func (s *Server) apiRun(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	b := s.opts.Backend
	run, err := b.Run(r.Context(), id)
	if err != nil {
		s.fail(w, err, http.StatusInternalServerError)
		return
	}
	summary, err := b.Summary(r.Context(), id)
	if err != nil {
		s.logf("summary of %s: %v", id, err)
	}
	commits, err := b.Commits(r.Context(), id, true)
	if err != nil {
		s.logf("commits of %s: %v", id, err)
	}
	if commits == nil {
		commits = []Commit{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"run": run, "summary": summary, "commits": commits})
}

func (s *Server) apiDiff(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	d, err := s.opts.Backend.Diff(r.Context(), id)
	if err != nil {
		s.fail(w, err, http.StatusConflict)
		return
	}
	if d.Files == nil {
		d.Files = []FileDiff{}
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) apiEgress(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	recs, err := s.opts.Backend.Egress(r.Context(), id)
	if err != nil {
		s.fail(w, err, http.StatusInternalServerError)
		return
	}
	if recs == nil {
		recs = []EgressRecord{}
	}
	writeJSON(w, http.StatusOK, recs)
}

func (s *Server) apiTranscript(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	from, err := offset(r.URL.Query().Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	t, err := s.opts.Backend.Transcript(r.Context(), id, from)
	if err != nil {
		s.fail(w, err, http.StatusInternalServerError)
		return
	}
	if t.Entries == nil {
		t.Entries = []Entry{}
	}
	writeJSON(w, http.StatusOK, t)
}

func offset(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("the transcript offset must be a byte offset, not %q", s)
	}
	return n, nil
}

func (s *Server) apiAction(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	a := Action{Name: r.PathValue("action")}
	if !actions[a.Name] {
		writeError(w, http.StatusNotFound, "no such action: "+strconv.Quote(a.Name))
		return
	}
	if err := decodeBody(r, &a); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.opts.Backend.Action(r.Context(), id, a)
	if err != nil {
		s.fail(w, err, http.StatusConflict)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) apiNew(w http.ResponseWriter, r *http.Request) {
	c, err := s.opts.Backend.NewChoices(r.Context())
	if err != nil {
		s.fail(w, err, http.StatusInternalServerError)
		return
	}
	for _, l := range []*[]string{&c.Prompts, &c.Profiles, &c.Agents} {
		if *l == nil {
			*l = []string{}
		}
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) apiStartRun(w http.ResponseWriter, r *http.Request) {
	var req NewRun
	if err := decodeBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, err := s.opts.Backend.StartRun(r.Context(), req)
	if err != nil {
		s.fail(w, err, http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id})
}

// decodeBody reads a small JSON body strictly: an unknown field is an
// error, as an unknown flag would be.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("the request body must be a JSON object ({} for none)")
		}
		return fmt.Errorf("the request body is not valid: %v", err)
	}
	return nil
}

// fail answers an error from the backend: its own status if it has one,
// 404 for an unknown run, else def.
func (s *Server) fail(w http.ResponseWriter, err error, def int) {
	code := def
	var he *HTTPError
	switch {
	case errors.As(err, &he):
		code = he.Status
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	}
	if code >= 500 {
		s.logf("%v", err)
	}
	writeError(w, code, err.Error())
}

func (s *Server) logf(format string, args ...any) {
	fmt.Fprintf(s.opts.Log, "airlock ui: "+format+"\n", args...)
}

// writeJSON answers v as JSON. encoding/json escapes <, > and & in strings,
// so even a sandbox's markup read as HTML by mistake is inert.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
