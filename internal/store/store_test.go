package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newRun(id, name, project string, created time.Time) *Run {
	return &Run{ID: id, Name: name, Project: project, Status: StatusCreating, CreatedAt: created}
}

func TestCreateGetUpdate(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := newRun("fix-1234abcd", "fix", "/p", time.Now())
	if err := s.Create(r); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(r); err == nil {
		t.Fatal("second Create with the same ID succeeded")
	}
	if _, err := s.Update(r.ID, func(r *Run) error { r.Status = StatusRunning; return nil }); err != nil {
		t.Fatal(err)
	}
	// A failing update writes nothing.
	if _, err := s.Update(r.ID, func(r *Run) error { r.Status = StatusFailed; return errors.New("no") }); err == nil {
		t.Fatal("want error")
	}
	got, err := s.Get(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusRunning {
		t.Fatalf("status = %s, want running", got.Status)
	}
	if _, err := s.Get("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func TestConcurrentRunsAndUpdates(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("r-%08x", i)
			if err := s.Create(newRun(id, "r", "/p", time.Now())); err != nil {
				t.Error(err)
				return
			}
			for range 10 {
				if _, err := s.Update(id, func(r *Run) error { r.Turns++; return nil }); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	// Concurrent increments of one record must not lose updates.
	shared := "shared-00000000"
	if err := s.Create(newRun(shared, "shared", "/p", time.Now())); err != nil {
		t.Fatal(err)
	}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update(shared, func(r *Run) error { r.Turns++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	runs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != n+1 {
		t.Fatalf("listed %d runs, want %d", len(runs), n+1)
	}
	for _, r := range runs {
		want := 10
		if r.ID == shared {
			want = n
		}
		if r.Turns != want {
			t.Errorf("%s: turns = %d, want %d", r.ID, r.Turns, want)
		}
	}
}

func TestListSkipsHalfCreated(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	if err := os.Mkdir(filepath.Join(dir, "runs", "crashed-00000000"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(newRun("ok-00000000", "ok", "/p", time.Now())); err != nil {
		t.Fatal(err)
	}
	runs, err := s.List()
	if err != nil || len(runs) != 1 || runs[0].ID != "ok-00000000" {
		t.Fatalf("List = %v, %v", runs, err)
	}
}

func TestResolve(t *testing.T) {
	s, _ := Open(t.TempDir())
	t0 := time.Now()
	for _, r := range []*Run{
		newRun("fix-aaaa1111", "fix", "/p", t0),
		newRun("fix-bbbb2222", "fix", "/p", t0.Add(time.Second)),
		newRun("docs-cccc3333", "docs", "/p", t0.Add(2*time.Second)),
		newRun("other-dddd4444", "other", "/q", t0.Add(3*time.Second)),
		newRun("same-eeee5555", "same", "/p", t0.Add(4*time.Second)),
		newRun("same-ffff6666", "same", "/q", t0.Add(5*time.Second)),
	} {
		if err := s.Create(r); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		project, ref, want, wantErr string
	}{
		{"/p", "", "same-eeee5555", ""},
		{"/q", "", "same-ffff6666", ""},
		{"/p", "fix", "fix-bbbb2222", ""},
		{"/p", "fix-aaaa1111", "fix-aaaa1111", ""},
		{"/p", "fix-a", "fix-aaaa1111", ""},
		// Another project's run is never taken for this project's.
		{"/p", "other-dddd4444", "", "is run other-dddd4444, which belongs to /q, not to this project (/p)"},
		{"/p", "other", "", "no such run in this project"},
		{"/q", "fix", "", "is run fix-bbbb2222, which belongs to /p"},
		// Every project ("" = --all-projects).
		{"", "other-d", "other-dddd4444", ""},
		{"", "docs", "docs-cccc3333", ""},
		{"", "same", "", "ambiguous"}, // a name used in two projects
		{"/q", "same", "same-ffff6666", ""},
		{"/p", "f", "", "ambiguous"},
		{"/p", "zzz", "", "no such run"},
		{"/empty", "", "", "no runs yet"},
	}
	for _, tt := range tests {
		t.Run(tt.project+"/"+tt.ref, func(t *testing.T) {
			r, err := s.Resolve(tt.project, tt.ref)
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || r.ID != tt.want {
				t.Fatalf("Resolve = %v, %v; want %s", r, err, tt.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
