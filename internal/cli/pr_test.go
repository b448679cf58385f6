package cli

import (
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
)

// A run that continued another's work started from that run's branch; its
// pull request goes where the first run's would.
func TestPRBase(t *testing.T) {
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runs := []*store.Run{
		{ID: "a-1", BaseBranch: "develop"},
		{ID: "b-2", BaseBranch: "airlock/a-1", ResumedFrom: "a-1"},
		{ID: "c-3", BaseBranch: "airlock/b-2", ResumedFrom: "b-2"},
		{ID: "d-4", BaseBranch: "airlock/gone-9", ResumedFrom: "gone-9"},
		{ID: "e-5", BaseBranch: "main", ResumedFrom: "a-1"},
	}
	for _, r := range runs {
		if err := st.Create(r); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []string{"develop", "develop", "develop", "", "main"} {
		if got := prBase(st, runs[i]); got != want {
			t.Errorf("prBase(%s) = %q, want %q", runs[i].ID, got, want)
		}
	}
}

// The default body: the agent's words fenced and cleaned, then the
// host's facts.
func TestPRBody(t *testing.T) {
	r := &store.Run{ID: "fix-1a2b", Agent: "claude", Model: "sonnet", Turns: 7, CostUSD: 0.0123,
		BaseBranch: "main", BaseCommit: strings.Repeat("ab", 20)}
	body := prBody(r, "All done \x1b[31m@octocat\x1b[0m\n```\nfixes #1")
	for _, s := range []string{"````text\nAll done @octocat\n```\nfixes #1\n````\n", "airlock run `fix-1a2b` · agent claude (sonnet) · 7 turns · $0.01", "started from main at abababababab"} {
		if !strings.Contains(body, s) {
			t.Errorf("body lacks %q:\n%s", s, body)
		}
	}
	if body := prBody(r, "  \n"); strings.Contains(body, "```") || !strings.HasPrefix(body, "---\nairlock run") {
		t.Errorf("body without a summary:\n%s", body)
	}
}
