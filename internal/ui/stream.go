package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
)

// sse writes server-sent events.
type sse struct {
	w http.ResponseWriter
	c *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, c: http.NewResponseController(w)}
	// How long a browser waits before it reconnects after the server
	// went away (a restart): the page keeps working.
	fmt.Fprint(w, "retry: 2000\n\n")
	s.c.Flush()
	return s
}

// event sends one event; id, if not empty, is what the browser sends back
// as Last-Event-ID when it reconnects.
func (s *sse) event(name, id string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.raw(name, id, data)
}

func (s *sse) raw(name, id string, data []byte) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "event: %s\n", name)
	if id != "" {
		fmt.Fprintf(&b, "id: %s\n", id)
	}
	// JSON has no raw newlines, so the data is one line.
	fmt.Fprintf(&b, "data: %s\n\n", data)
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	return s.c.Flush()
}

func (s *sse) heartbeat() error {
	if _, err := fmt.Fprint(s.w, ": ping\n\n"); err != nil {
		return err
	}
	return s.c.Flush()
}

// ticker calls fn at once and then every poll, and sends a heartbeat every
// beat, until the client goes away or fn fails.
func (s *Server) ticker(ctx context.Context, ev *sse, fn func() error) {
	poll := time.NewTicker(s.opts.Poll)
	defer poll.Stop()
	beat := time.NewTicker(s.opts.Heartbeat)
	defer beat.Stop()
	if err := fn(); err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if err := ev.heartbeat(); err != nil {
				return
			}
		case <-poll.C:
			if err := fn(); err != nil {
				return
			}
		}
	}
}

// streamRuns sends the runs list first and whenever it changes.
func (s *Server) streamRuns(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	all := s.allRuns(r)
	ev := startSSE(w)
	var last []byte
	s.ticker(ctx, ev, func() error {
		runs, err := s.opts.Backend.Runs(ctx, all)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.logf("runs: %v", err)
			return nil
		}
		if runs == nil {
			runs = []*store.Run{}
		}
		data, err := json.Marshal(runs)
		if err != nil {
			return err
		}
		if bytes.Equal(data, last) {
			return nil
		}
		last = data
		return ev.raw("runs", "", data)
	})
}

// streamRun sends a run's transcript as it grows (resuming from
// Last-Event-ID, the offset the browser last had), its new commits, and
// the run itself when its status, turns or cost change.
func (s *Server) streamRun(w http.ResponseWriter, r *http.Request) {
	id, ok := runID(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	b := s.opts.Backend
	if _, err := b.Run(ctx, id); err != nil {
		s.fail(w, err, http.StatusInternalServerError)
		return
	}
	from, err := offset(r.Header.Get("Last-Event-ID"))
	if err == nil && from == 0 {
		from, err = offset(r.URL.Query().Get("from"))
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ev := startSSE(w)
	var (
		lastRun     string
		seen        map[string]bool // commits already there when the stream began, or sent
		finished    bool
		commitsPoll time.Time
	)
	s.ticker(ctx, ev, func() error {
		run, err := b.Run(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.logf("run %s: %v", id, err)
			return nil
		}
		if key := fmt.Sprintf("%s|%s|%d|%g|%d|%d", run.Status, run.StopReason, run.Turns, run.CostUSD, run.EgressAllowed, run.EgressDenied); key != lastRun {
			lastRun = key
			if err := ev.event("run", "", run); err != nil {
				return err
			}
		}
		// A long transcript comes in pieces: catch up a few at a time.
		for range 16 {
			t, err := b.Transcript(ctx, id, from)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				break // not written yet, or refused (the agent replaced it)
			}
			if len(t.Entries) == 0 && t.Next == from {
				break
			}
			if t.Entries == nil {
				t.Entries = []Entry{}
			}
			from = t.Next
			if err := ev.event("transcript", strconv.FormatInt(t.Next, 10), t); err != nil {
				return err
			}
		}
		// Commits cost a git command in the sandbox: fewer looks.
		if finished || time.Since(commitsPoll) < 3*s.opts.Poll {
			return nil
		}
		commitsPoll = time.Now()
		finished = run.Status.Finished()
		// Looks go without stats; only when a commit is new are they
		// asked for (the notification shows the new commit's).
		commits, err := b.Commits(ctx, id, false)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return nil
		}
		if seen == nil {
			seen = map[string]bool{}
			for _, c := range commits {
				seen[c.SHA] = true
			}
			return nil
		}
		if slices.ContainsFunc(commits, func(c Commit) bool { return !seen[c.SHA] }) {
			if withStat, err := b.Commits(ctx, id, true); err == nil {
				commits = withStat
			} else if ctx.Err() != nil {
				return err
			}
		}
		for _, c := range commits {
			if seen[c.SHA] {
				continue
			}
			seen[c.SHA] = true
			if err := ev.event("commit", "", c); err != nil {
				return err
			}
		}
		return nil
	})
}
