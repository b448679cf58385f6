package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/forge"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// PROptions are airlock pr's, and the web UI's open-PR action's. Empty
// strings take the defaults.
type PROptions struct {
	Title       string // default: the run's name
	Body        string // default: the agent's summary (inert), and the run's facts
	Draft       bool
	Remote      string // default origin
	Base        string // default: the branch the run started from
	AllProjects bool   // the command only
	// Progress, if set, gets the line saying what was pushed.
	Progress io.Writer
}

func newPRCmd(f *Factory) *cobra.Command {
	var opts PROptions
	cmd := &cobra.Command{
		Use:   "pr [RUN]",
		Short: "Open a GitHub pull request for a run's branch",
		Long: `Push the run's branch as airlock push does (nothing happens if it is already on
the remote), then open a pull request on GitHub from it into --base (default:
the branch the run started from), and print its URL.

The repository is the one the remote's URL names (https://HOST/OWNER/REPO,
git@HOST:OWNER/REPO or ssh://…). The token is your own, read on this host
only, and never enters a sandbox: GH_TOKEN, else GITHUB_TOKEN, else what
gh auth token prints for the remote's host. The API is
https://api.github.com; for GitHub Enterprise Server set
[github] api_url = "https://HOST/api/v3" in your user config.

The title defaults to the run's name. The body defaults to the agent's final
summary, shown as text (control characters and escape sequences removed,
fenced so that GitHub renders none of it: no mentions, links, images or
HTML), then the run's ID, agent, turns and cost as airlock's proxy metered
them. --body replaces the whole body.`,
		Example: `  airlock pr fix-auth
  airlock pr fix-auth --draft --title "Fix the login redirect" --base develop`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Progress = f.IO.ErrOut
			return prCmd(cmd.Context(), f, firstArg(args), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Title, "title", "t", "", "the pull request's title (default: the run's name)")
	fl.StringVarP(&opts.Body, "body", "b", "", "the pull request's body (default: the agent's summary and the run's cost and turns)")
	fl.BoolVarP(&opts.Draft, "draft", "d", false, "open it as a draft")
	fl.StringVar(&opts.Remote, "remote", "origin", "the remote to push to; its URL names the GitHub repository")
	fl.StringVarP(&opts.Base, "base", "B", "", "the branch to merge into (default: the branch the run started from)")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func prCmd(ctx context.Context, f *Factory, ref string, opts PROptions) error {
	r, err := f.resolveRun(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	url, err := f.openPR(ctx, r, opts)
	if err != nil {
		return err
	}
	fmt.Fprintln(f.IO.Out, url)
	return nil
}

// openPR pushes a finished run's branch and opens a GitHub pull request
// from it; it returns the pull request's URL. Everything that can be
// checked here (the run, the remote, the API URL, the token) is checked
// before anything is pushed. It is the pr of both the command and the web
// UI.
func (f *Factory) openPR(ctx context.Context, r *store.Run, opts PROptions) (string, error) {
	m, err := f.manager()
	if err != nil {
		return "", err
	}
	if r, err = m.Pushable(ctx, r, "open a pull request for"); err != nil {
		return "", err
	}
	if opts.Remote == "" {
		opts.Remote = "origin"
	}
	base := opts.Base
	if base == "" {
		base = prBase(m.Store, r)
	}
	if base == "" {
		return "", fmt.Errorf("cannot open a pull request for run %s: it did not start from a branch of yours; give the branch to merge into with --base", r.ID)
	}
	rawURL, err := workspace.RemoteURL(ctx, r.Project, opts.Remote)
	if err != nil {
		return "", fmt.Errorf("cannot open a pull request for run %s: %w", r.ID, err)
	}
	repo, err := forge.ParseRemote(rawURL)
	if err != nil {
		return "", fmt.Errorf("cannot open a pull request for run %s: remote %s: %w", r.ID, opts.Remote, err)
	}
	res, err := f.loadConfig(r.Project)
	if err != nil {
		return "", err
	}
	apiURL, from := res.Config.GitHub.APIURL, res.From("github.api_url")
	if apiURL == "" {
		apiURL, from = forge.DefaultAPI, "default"
	}
	api, err := forge.ParseAPIURL(apiURL)
	if err != nil {
		return "", fmt.Errorf("%s: github.api_url: %w", from, err)
	}
	if err := forge.Serves(api, repo); err != nil {
		return "", fmt.Errorf("cannot open a pull request for run %s: remote %s (%s): %w", r.ID, opts.Remote, rawURL, err)
	}
	tokenHost := repo.Host
	if api.Hostname() == "api.github.com" {
		tokenHost = "github.com"
	}
	token, source, err := f.gitHubToken(ctx, tokenHost)
	if err != nil {
		return "", fmt.Errorf("cannot open a pull request for run %s: %w", r.ID, err)
	}

	pushed, err := f.pushRun(ctx, r, PushOptions{Remote: opts.Remote})
	if err != nil {
		return "", err
	}
	if opts.Progress != nil {
		fmt.Fprintln(opts.Progress, pushed)
	}

	pr := forge.NewPR{Title: opts.Title, Body: opts.Body, Head: workspace.Branch(r.ID), Base: base, Draft: opts.Draft}
	if pr.Title == "" {
		pr.Title = forge.Title(r.Name)
	}
	if pr.Title == "" {
		pr.Title = "airlock run " + r.ID
	}
	if pr.Body == "" {
		pr.Body = prBody(r, m.Summary(r).Result)
	}
	client := &forge.Client{HTTP: &http.Client{Timeout: time.Minute}, API: api, Token: token, UserAgent: "airlock"}
	out, err := client.CreatePR(ctx, repo, pr)
	if err != nil {
		err = fmt.Errorf("cannot open a pull request for run %s: %w", r.ID, err)
		var apiErr *forge.APIError
		if errors.As(err, &apiErr) && (apiErr.Status == 401 || apiErr.Status == 403) {
			err = fmt.Errorf("%w (the token from %s, sent to %s)", err, strings.TrimPrefix(source, "env:"), api.Redacted())
		}
		return "", err
	}
	return out.URL, nil
}

// prBase is a pull request's default base: the branch the run started from; for a run that
// continued another's work (run --resume), which started from that run's
// branch, the branch the first of them started from.
func prBase(st *store.Store, r *store.Run) string {
	for range 100 {
		if !strings.HasPrefix(r.BaseBranch, workspace.BranchPrefix) || r.ResumedFrom == "" {
			break
		}
		prev, err := st.Get(r.ResumedFrom)
		if err != nil {
			break
		}
		r = prev
	}
	if strings.HasPrefix(r.BaseBranch, workspace.BranchPrefix) {
		return ""
	}
	return r.BaseBranch
}

// prBody is a pull request's default body: the agent's summary, inert,
// and the run's facts as the host knows them.
func prBody(r *store.Run, summary string) string {
	var b strings.Builder
	if strings.TrimSpace(summary) != "" {
		b.WriteString("The agent's summary of its work, in its own words:\n\n")
		b.WriteString(forge.InertBlock(summary))
		b.WriteString("\n\n")
	}
	agent := r.Agent
	if r.Model != "" {
		agent += " (" + r.Model + ")"
	}
	fmt.Fprintf(&b, "---\nairlock run `%s` · agent %s · %d turns · %s, as airlock's egress proxy metered them",
		r.ID, agent, r.Turns, cost(r.CostUSD))
	if r.BaseCommit != "" && len(r.BaseCommit) >= 12 {
		fmt.Fprintf(&b, " · started from %s at %s", r.BaseBranch, r.BaseCommit[:12])
	}
	b.WriteString("\n")
	return b.String()
}
