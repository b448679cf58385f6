package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/transcript"
	"github.com/airlock-dev/airlock/internal/ui"
	"github.com/airlock-dev/airlock/internal/untrusted"
	"github.com/airlock-dev/airlock/internal/workspace"
)

type uiOptions struct {
	Addr        string
	NoOpen      bool
	AllProjects bool
	AllowRemote bool
	NewSession  bool
}

const defaultUIAddr = "127.0.0.1:7777"

func newUICmd(f *Factory) *cobra.Command {
	var opts uiOptions
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web dashboard: every run, its transcript, diff, egress log and a terminal",
		Long: `Serve the web dashboard on --addr (default 127.0.0.1:7777) and open it in the
browser (unless --no-open, or there is no display). The printed URL carries a
token that is new at each start: opening it signs the browser in with a cookie
that lasts across restarts (--new-session signs every browser out).

The dashboard lists this project's runs (every project's with --all-projects),
streams a run's transcript, shows its commits, diff and egress log, acts on it
(stop, kill, merge, push, pr, rm) with the CLI's own checks and errors, starts
runs, and opens a terminal into a running sandbox.

Only loopback addresses are served unless --allow-remote is given; then the
server speaks TLS with a self-signed certificate kept in the state directory,
whose fingerprint it prints. See docs/ui.md for the security model.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return uiRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Addr, "addr", defaultUIAddr, "address to listen on, host:port (port 0: any free port)")
	fl.BoolVar(&opts.NoOpen, "no-open", false, "do not open the browser")
	fl.BoolVar(&opts.AllProjects, "all-projects", false, "list the runs of every project")
	fl.BoolVar(&opts.AllowRemote, "allow-remote", false, "allow a non-loopback --addr (served over TLS)")
	fl.BoolVar(&opts.NewSession, "new-session", false, "sign out every browser: make a new session secret")
	return cmd
}

// uiDir holds the dashboard's session secret, certificate and the note of a
// running server, in the state directory.
func uiDir(st *store.Store) string { return filepath.Join(st.Dir(), "ui") }

// uiServerNote is what a running server leaves for `airlock run --ui`: where
// it is and the token to sign a browser in. 0600, as the session secret.
type uiServerNote struct {
	PID   int    `json:"pid"`
	Base  string `json:"base"`
	Token string `json:"token"`
}

func uiRun(ctx context.Context, f *Factory, opts uiOptions) error {
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return flagErrorf("--addr %q: want host:port, such as %s", opts.Addr, defaultUIAddr)
	}
	remote := !isLoopback(host)
	if remote && !opts.AllowRemote {
		return flagErrorf("--addr %s is not a loopback address: anyone who can reach it could try the dashboard; add --allow-remote to serve it (over TLS) anyway", opts.Addr)
	}
	st, err := f.Store()
	if err != nil {
		return err
	}
	project, err := f.project(ctx)
	if err != nil && !opts.AllProjects {
		return fmt.Errorf("%w (or add --all-projects)", err)
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	dir := uiDir(st)
	secret, err := ui.LoadSecret(filepath.Join(dir, "session"), opts.NewSession)
	if err != nil {
		return err
	}
	token, err := ui.NewToken()
	if err != nil {
		return err
	}
	sopts := ui.Options{
		Addr:        opts.Addr,
		Token:       token,
		Secret:      secret,
		AllProjects: opts.AllProjects,
		Version:     strings.ReplaceAll(versionText(debug.ReadBuildInfo()), "\n", ", "),
		Backend:     &uiBackend{f: f, m: m, st: st, project: project},
		Log:         f.IO.ErrOut,
	}
	if remote {
		cfg, fp, err := ui.LoadCert(dir)
		if err != nil {
			return err
		}
		sopts.TLS = cfg
		fmt.Fprintf(f.IO.ErrOut, "warning: serving the dashboard on %s, beyond this machine: anyone with the printed URL can act on your runs.\n", opts.Addr)
		fmt.Fprintf(f.IO.ErrOut, "TLS certificate (self-signed, %s) SHA-256 fingerprint:\n  %s\nCheck that your browser shows the same one before you trust it.\n", filepath.Join(dir, "cert.pem"), fp)
	}
	srv, err := ui.Listen(sopts)
	if err != nil {
		return err
	}
	note := filepath.Join(dir, "server.json")
	if data, err := json.Marshal(uiServerNote{PID: os.Getpid(), Base: srv.Base(), Token: token}); err == nil {
		if err := ui.WritePrivate(note, data); err != nil {
			fmt.Fprintf(f.IO.ErrOut, "warning: %v\n", err)
		}
		defer removeNoteIfMine(note)
	}
	url := srv.URL("/")
	fmt.Fprintln(f.IO.ErrOut, "Serving the airlock dashboard (Ctrl-C stops it). Open:")
	fmt.Fprintln(f.IO.Out, url)
	if !opts.NoOpen {
		f.openBrowser(url)
	}
	return srv.Serve(ctx)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// removeNoteIfMine removes the server note unless another server has
// written its own since.
func removeNoteIfMine(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var n uiServerNote
	if json.Unmarshal(data, &n) == nil && n.PID == os.Getpid() {
		os.Remove(path)
	}
}

// openBrowser opens url with xdg-open when there is a display. It never
// fails the command: the URL is printed anyway.
func (f *Factory) openBrowser(url string) {
	if f.Getenv("DISPLAY") == "" && f.Getenv("WAYLAND_DISPLAY") == "" {
		return
	}
	cmd := exec.Command("xdg-open", url)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return
	}
	go cmd.Wait()
}

// runningUI finds the dashboard server of this state directory, if one is
// running and answers.
func runningUI(st *store.Store) (*uiServerNote, bool) {
	data, err := ui.ReadPrivate(filepath.Join(uiDir(st), "server.json"))
	if err != nil {
		return nil, false
	}
	var n uiServerNote
	if json.Unmarshal(data, &n) != nil || n.Base == "" || n.Token == "" {
		return nil, false
	}
	if syscall.Kill(n.PID, 0) != nil {
		return nil, false
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(n.Base + "/api/session")
	if err != nil {
		return nil, false
	}
	resp.Body.Close()
	// Not signed in: 401 is the answer of a live dashboard.
	return &n, resp.StatusCode == http.StatusUnauthorized
}

// openRunPage prints (and opens) a run's page: on the state directory's
// running dashboard, else on one started in the background for it (on
// 127.0.0.1, any free port; it keeps running until stopped).
func (f *Factory) openRunPage(ctx context.Context, st *store.Store, r *store.Run) error {
	n, ok := runningUI(st)
	if !ok {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("start the dashboard: %w", err)
		}
		if err := os.MkdirAll(uiDir(st), 0o700); err != nil {
			return err
		}
		logf, err := os.OpenFile(filepath.Join(uiDir(st), "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("start the dashboard: %w", err)
		}
		defer logf.Close()
		cmd := exec.Command(exe, "ui", "--no-open", "--addr", "127.0.0.1:0", "--all-projects")
		cmd.Dir = r.Project
		cmd.Env = f.Environ()
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start the dashboard: %w", err)
		}
		pid := cmd.Process.Pid
		cmd.Process.Release()
		deadline := time.Now().Add(10 * time.Second)
		for n, ok = runningUI(st); !ok || n.PID != pid; n, ok = runningUI(st) {
			if time.Now().After(deadline) {
				return fmt.Errorf("the dashboard did not start within 10s: see %s", filepath.Join(uiDir(st), "server.log"))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		fmt.Fprintf(f.IO.ErrOut, "Started the dashboard in the background (pid %d; stop it with kill %d).\n", pid, pid)
	}
	url := n.Base + "/runs/" + r.ID + "?token=" + n.Token
	fmt.Fprintf(f.IO.ErrOut, "Its page: %s\n", url)
	f.openBrowser(url)
	return nil
}

// uiBackend is the dashboard's view of airlock: the same manager, store and
// helpers the commands use, so what the page shows and the errors it gets
// are the CLI's.
type uiBackend struct {
	f       *Factory
	m       *run.Manager
	st      *store.Store
	project string
}

func (b *uiBackend) Project() string { return b.project }

func (b *uiBackend) Runs(ctx context.Context, all bool) ([]*store.Run, error) {
	runs, err := b.st.List()
	if err != nil {
		return nil, err
	}
	var shown []*store.Run
	for _, r := range runs {
		if (!all && r.Project != b.project) || r.Removed() {
			continue
		}
		if !r.Status.Finished() {
			if cur, err := b.m.Reconcile(ctx, r); err == nil {
				r = cur
			}
		}
		shown = append(shown, r)
	}
	return jsonCosts(shown), nil
}

// get is a run by exact ID, reconciled.
func (b *uiBackend) get(ctx context.Context, id string) (*store.Run, error) {
	r, err := b.st.Get(id)
	if err != nil {
		return nil, err
	}
	if !r.Status.Finished() {
		if cur, err := b.m.Reconcile(ctx, r); err == nil {
			r = cur
		}
	}
	return r, nil
}

func (b *uiBackend) Run(ctx context.Context, id string) (*store.Run, error) {
	r, err := b.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return jsonCosts([]*store.Run{r})[0], nil
}

func (b *uiBackend) Summary(ctx context.Context, id string) (string, error) {
	r, err := b.st.Get(id)
	if err != nil {
		return "", err
	}
	return b.m.Summary(r).Result, nil
}

func (b *uiBackend) Commits(ctx context.Context, id string, withStat bool) ([]ui.Commit, error) {
	r, err := b.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Removed() {
		return nil, nil
	}
	cs, err := b.m.Commits(ctx, r, withStat)
	if err != nil {
		return nil, err
	}
	out := make([]ui.Commit, len(cs))
	for i, c := range cs {
		out[i] = ui.Commit{SHA: c.SHA, Subject: c.Subject, Author: c.Author, Time: c.Time, Stat: c.Stat}
	}
	return out, nil
}

// maxDiff bounds the diff the page gets: the agent can write gigabytes.
const maxDiff = 32 << 20

func (b *uiBackend) Diff(ctx context.Context, id string) (*ui.Diff, error) {
	r, err := b.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Status == store.StatusRunning && !r.Here {
		stat, patch, err := b.m.LiveDiff(ctx, r, 1<<20, maxDiff)
		switch {
		case err == nil:
			return &ui.Diff{Stat: stat, Files: ui.ParseDiff(patch)}, nil
		case !errors.Is(err, run.ErrNotRunning):
			return nil, ui.Errorf(http.StatusConflict, "%v", err)
		}
		// It ended meanwhile: its work is being brought back.
	}
	var stat bytes.Buffer
	if err := b.m.Diff(ctx, r, workspace.DiffOptions{Stat: true}, &capWriter{w: &stat, n: 1 << 20}); err != nil {
		if errors.Is(err, run.ErrStillRunning) {
			return nil, ui.Errorf(http.StatusConflict, "%v", err)
		}
		return nil, err
	}
	var patch bytes.Buffer
	if err := b.m.Diff(ctx, r, workspace.DiffOptions{}, &capWriter{w: &patch, n: maxDiff}); err != nil && !errors.Is(err, errCapped) {
		return nil, err
	}
	return &ui.Diff{Stat: stat.String(), Files: ui.ParseDiff(patch.String())}, nil
}

var errCapped = errors.New("output capped")

// capWriter keeps at most n bytes, then fails the write, which stops git,
// and calls full, if set.
type capWriter struct {
	w    io.Writer
	n    int
	full func()
}

func (c *capWriter) Write(p []byte) (int, error) {
	if len(p) > c.n {
		c.w.Write(p[:c.n])
		c.n = 0
		if c.full != nil {
			c.full()
		}
		return 0, errCapped
	}
	c.n -= len(p)
	return c.w.Write(p)
}

// maxEgress is how many of the newest egress records the page gets.
const maxEgress = 10000

func (b *uiBackend) Egress(ctx context.Context, id string) ([]ui.EgressRecord, error) {
	r, err := b.st.Get(id)
	if err != nil {
		return nil, err
	}
	file, err := untrusted.Open(b.m.AuditLogPath(r))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var recs []ui.EgressRecord
	_, err = eachLine(file, func(line []byte) error {
		var rec egress.Record
		if json.Unmarshal(line, &rec) != nil {
			return nil // a torn last line
		}
		d := "allowed"
		if !rec.Allowed {
			d = "denied"
		}
		if len(recs) == maxEgress {
			recs = recs[1:]
		}
		recs = append(recs, ui.EgressRecord{
			Time: rec.Time, Decision: d, Kind: rec.Kind, Host: rec.Host, Port: rec.Port, Method: rec.Method,
			Path: rec.Path, Rule: rec.Rule, Reason: rec.Reason, Addr: rec.Addr, Up: rec.BytesUp, Down: rec.BytesDown, Scan: rec.Scan,
		})
		return nil
	})
	return recs, err
}

// maxTranscriptRead is how much of the transcript one call reads.
const maxTranscriptRead = 4 << 20

func (b *uiBackend) Transcript(ctx context.Context, id string, from int64) (*ui.Transcript, error) {
	r, err := b.st.Get(id)
	if err != nil {
		return nil, err
	}
	// The agent's file: no links, no FIFOs, at most its last
	// transcript.MaxWindow bytes.
	file, err := b.m.OpenTranscript(r)
	if errors.Is(err, fs.ErrNotExist) {
		return &ui.Transcript{Next: from}, nil
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	start, err := file.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	fi, err := file.Stat()
	if err != nil {
		return nil, err
	}
	// An offset past the end is from a transcript that was replaced:
	// start again.
	if from > start && from <= fi.Size() {
		if start, err = file.Seek(from, io.SeekStart); err != nil {
			return nil, err
		}
	}
	buf := make([]byte, maxTranscriptRead)
	n, err := io.ReadFull(file, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	buf = buf[:n]
	end := bytes.LastIndexByte(buf, '\n') + 1
	if end == 0 && n == maxTranscriptRead {
		end = n // a line longer than a read: skipped, as logs does
	}
	t := &ui.Transcript{Next: start + int64(end)}
	parse := run.ParserOf(r)
	for line := range bytes.SplitSeq(buf[:end], []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		evs, err := parse(line)
		if err != nil {
			continue
		}
		if len(evs) == 1 && evs[0].Kind == transcript.KindUnknown {
			if p, ok := typedPrompt(line); ok {
				t.Entries = append(t.Entries, ui.Entry{Kind: "user", Text: p})
			}
			continue
		}
		for _, ev := range evs {
			if e, ok := transcriptEntry(ev); ok {
				t.Entries = append(t.Entries, e)
			}
		}
	}
	return t, nil
}

// maxEntryText caps one entry's text (a tool's output can be megabytes).
const maxEntryText = 64 << 10

// transcriptEntry turns an event into what the page shows. The text is the agent's,
// raw: the page shows it as text.
func transcriptEntry(ev transcript.Event) (ui.Entry, bool) {
	var e ui.Entry
	switch ev.Kind {
	case transcript.KindText, transcript.KindThinking:
		e = ui.Entry{Kind: "assistant", Text: ev.Text}
	case transcript.KindToolUse:
		// The one-line form logs shows: the tool and its main argument.
		var b bytes.Buffer
		rd := transcript.Renderer{W: &b, Verbosity: 1, Width: 400}
		rd.Render(ev)
		text := strings.TrimPrefix(strings.TrimSpace(b.String()), "▸ ")
		e = ui.Entry{Kind: "tool_use", Text: text}
	case transcript.KindToolResult:
		e = ui.Entry{Kind: "tool_result", Text: ev.ToolResult}
	case transcript.KindResult:
		e = ui.Entry{Kind: "result", Text: ev.Text}
		if ev.IsError && len(ev.Errors) > 0 {
			e.Text = strings.TrimSpace(e.Text + "\n" + strings.Join(ev.Errors, "\n"))
		}
	case transcript.KindInit:
		e = ui.Entry{Kind: "system", Text: fmt.Sprintf("session %s · %s", ev.SessionID, ev.Model)}
	case transcript.KindSystem:
		if ev.Text == "" {
			return e, false
		}
		e = ui.Entry{Kind: "system", Text: ev.Text}
	default:
		return e, false
	}
	if len(e.Text) > maxEntryText {
		e.Text = strings.ToValidUTF8(e.Text[:maxEntryText], "") + "\n… (cut)"
	}
	return e, true
}

func (b *uiBackend) Action(ctx context.Context, id string, a ui.Action) (*ui.ActionResult, error) {
	r, err := b.st.Get(id)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	// The commands themselves, their messages collected as they would
	// print them.
	g := b.f.withIO(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out})
	defer g.closeEngine()
	ref, allProjects := r.ID, true
	switch a.Name {
	case "stop", "kill":
		err = stopRun(ctx, g, ref, stopOptions{Kill: a.Name == "kill", Timeout: 10 * time.Second, AllProjects: allProjects})
	case "merge":
		err = mergeRun(ctx, g, ref, mergeOptions{Squash: a.Squash, AllProjects: allProjects})
	case "rm":
		err = rmRun(ctx, g, []string{ref}, rmOptions{Yes: true, Force: a.Force, AllProjects: allProjects})
	case "push":
		var msg string
		if msg, err = g.pushRun(ctx, r, PushOptions{Remote: a.Remote, Branch: a.Branch}); err == nil {
			out.WriteString(msg)
		}
	case "pr":
		var url string
		if url, err = g.openPR(ctx, r, PROptions{Title: a.Title, Body: a.Body, Draft: a.Draft, Progress: &out}); err == nil {
			fmt.Fprintf(&out, "Opened %s", url)
			return &ui.ActionResult{Message: strings.TrimSpace(out.String()), URL: url}, nil
		}
	default:
		return nil, ui.Errorf(http.StatusNotFound, "no such action %q", a.Name)
	}
	if err != nil {
		return nil, err
	}
	return &ui.ActionResult{Message: strings.TrimSpace(out.String())}, nil
}

func (b *uiBackend) NewChoices(ctx context.Context) (*ui.NewChoices, error) {
	c := &ui.NewChoices{Agents: agent.Names()}
	if b.project != "" {
		dir := filepath.Join(b.project, ".airlock", "prompts")
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".md") && e.Type().IsRegular() {
				c.Prompts = append(c.Prompts, ".airlock/prompts/"+e.Name())
			}
		}
	}
	res, err := b.f.profiles(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range res.Profiles() {
		c.Profiles = append(c.Profiles, p.Name)
	}
	return c, nil
}

func (b *uiBackend) StartRun(ctx context.Context, req ui.NewRun) (string, error) {
	if b.project == "" {
		return "", errors.New("the dashboard was started outside a repository (--all-projects): start runs with `airlock run` in one")
	}
	opts := runOptions{
		Name: req.Name, Agent: req.Agent, Profile: req.Profile, MaxCost: req.MaxCostUSD,
		Detach: true, Yes: true, Verbosity: 1, set: map[string]bool{"detach": true},
	}
	switch {
	case req.Prompt != "" && req.PromptFile != "":
		return "", errors.New("give either a prompt or a prompt file, not both")
	case req.Prompt != "":
		opts.Message, opts.set["message"] = req.Prompt, true
	case req.PromptFile != "":
		p := filepath.Join(b.project, filepath.FromSlash(req.PromptFile))
		if !b.f.inside(b.project, p) {
			return "", fmt.Errorf("the prompt file %s is not inside the project %s", req.PromptFile, b.project)
		}
		opts.Task = p
		opts.Tasks = []string{p}
	default:
		return "", errors.New("give a prompt, or pick a prompt file")
	}
	for name, set := range map[string]bool{"name": req.Name != "", "agent": req.Agent != "", "profile": req.Profile != "", "max-cost": req.MaxCostUSD != 0} {
		if set {
			opts.set[name] = true
		}
	}
	if req.MaxCostUSD < 0 {
		return "", errors.New("the budget must not be negative")
	}
	var out bytes.Buffer
	g := b.f.withIO(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: io.Discard})
	defer g.closeEngine()
	g.Getwd = func() (string, error) { return b.project, nil }
	if err := runRun(ctx, g, opts); err != nil {
		return "", err
	}
	return strings.TrimSpace(out.String()), nil
}

// Terminal opens a TTY in a running sandbox: an interactive run's agent
// (its tmux session, as attach does), else a shell in the tmux session
// airlock-web, which reloads and other tabs join.
func (b *uiBackend) Terminal(ctx context.Context, id string, cols, rows int) (io.ReadWriteCloser, func(cols, rows int), error) {
	r, err := b.st.Get(id)
	if err != nil {
		return nil, nil, err
	}
	s, err := b.m.Session(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	size := sandbox.TermSize{Width: uint(cols), Height: uint(rows)}
	// No status line: the shell gets the page's whole size, as stty
	// size in it says.
	const term = "xterm-256color" // xterm.js
	ctx, cancel := context.WithCancel(ctx)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	resize := make(chan sandbox.TermSize, 1)
	open := func() (int, error) {
		return s.Exec(ctx, sandbox.ExecSpec{
			Cmd:    []string{"tmux", "-u", "new-session", "-A", "-s", "airlock-web", ";", "set-option", "status", "off"},
			Env:    []string{"TERM=" + term, "LANG=C.UTF-8"},
			TTY:    true,
			Stdin:  inR,
			Stdout: outW,
			Size:   size,
			Resize: resize,
		})
	}
	if r.Kind == run.KindShell {
		if err := s.WaitTmux(ctx, 30*time.Second); err != nil {
			cancel()
			return nil, nil, err
		}
		open = func() (int, error) { return s.Attach(ctx, term, inR, outW, size, resize) }
	}
	go func() {
		code, err := open()
		switch {
		case err != nil && ctx.Err() == nil:
			outW.CloseWithError(err)
		case code != 0 && ctx.Err() == nil:
			outW.CloseWithError(fmt.Errorf("the terminal ended (exit status %d)", code))
		default:
			outW.CloseWithError(errors.New("the terminal ended"))
		}
		inR.Close()
	}()
	t := &uiTerminal{r: outR, w: inW, close: func() { cancel(); inW.Close(); outR.Close() }}
	return t, func(cols, rows int) {
		select { // only the latest size matters
		case <-resize:
		default:
		}
		resize <- sandbox.TermSize{Width: uint(cols), Height: uint(rows)}
	}, nil
}

type uiTerminal struct {
	r     io.Reader
	w     io.WriteCloser
	close func()
}

func (t *uiTerminal) Read(p []byte) (int, error)  { return t.r.Read(p) }
func (t *uiTerminal) Write(p []byte) (int, error) { return t.w.Write(p) }
func (t *uiTerminal) Close() error                { t.close(); return nil }

// withIO is a new factory like f, with other streams: a command run for
// the dashboard prints into a buffer, not the server's terminal.
func (f *Factory) withIO(io *IOStreams) *Factory {
	return &Factory{
		IO: io, Getenv: f.Getenv, Environ: f.Environ, Now: f.Now, Getwd: f.Getwd,
		UID: f.UID, GID: f.GID, EngineKind: f.EngineKind,
	}
}
