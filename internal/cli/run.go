package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/notify"
	"github.com/airlock-dev/airlock/internal/prompt"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
	"github.com/airlock-dev/airlock/internal/workspace"
)

type runOptions struct {
	Task      string
	Message   string
	Detach    bool
	Name      string
	Branch    string
	Agent     string
	Profile   string
	Model     string
	MaxTurns  int
	Env       []string
	Image     string
	Verbosity int
	Allow     []string
	Network   string
	Yes       bool
	// GitAuth is the git host whose token the proxy injects (--git-auth).
	GitAuth string
	// Runtime is the OCI runtime for the agent's container (--runtime).
	Runtime string

	// Tasks are all the prompts given; more than one makes a batch.
	Tasks   []string
	Jobs    int
	MaxCost float64
	Timeout string
	Caches  []string
	// Ports are -p's: sandbox ports forwarded to the host's loopback.
	Ports []string
	// UI starts the run detached and opens its page on the dashboard.
	UI bool

	// Resume continues this run's conversation; Persistent keeps the
	// container for `start`.
	Resume     string
	Persistent bool

	set map[string]bool // flags the user gave, so only they override config

	// resumeFrom is the run Resume names, found before the request is
	// built: a resumed run continues on its work, under its name.
	resumeFrom *store.Run
	// here: the run works on the live project (shell --here), so it has
	// no base to copy.
	here bool
}

func newRunCmd(f *Factory) *cobra.Command {
	var opts runOptions
	cmd := &cobra.Command{
		Use:     "run [TASK...]",
		Aliases: []string{"execute"},
		Short:   "Run the agent on a task in a new sandbox",
		Long: `Run the agent on a task, on its own copy of this repository, on branch
airlock/<run>, in a hardened container.

TASK is .airlock/prompts/TASK.md (TASK may end in .md), or a path to a prompt
file; -m gives the prompt inline instead. Prompt files are Markdown with optional
YAML frontmatter (name, branch, agent, model, max_turns, env, image, allow, setup);
a prompt is UTF-8 text of at most 1 MiB.

Everything is checked before anything is asked or created: the prompt, the
config, the name, variables, credentials, the base branch (it must name a
commit), the image and the container engine.

--resume RUN continues RUN's conversation on RUN's work: the new run's copy
starts at RUN's branch head with the changes RUN left uncommitted, and is
named as RUN unless --name (or the prompt's name:) says otherwise.

Without -d, run shows the agent's progress and exits 0 only if it succeeded
(3 if it failed); Ctrl-C stops the agent, keeping its work. With -d it prints
the run ID and returns at once: the run goes on without airlock, and a small
background watcher brings its work back and sends notifications when it ends.
--ui runs detached too and prints (and opens) the run's page on the web
dashboard: that of the running ` + "`airlock ui`" + ` of this state directory, else
one started in the background on 127.0.0.1 (it keeps running; see docs/ui.md).

Several tasks make a batch: each its own run, at most -j at once (default:
all), every output line prefixed with its run's name and a table at the end;
exit 0 only if every run succeeded. All tasks are checked before any starts.

Budgets stop the agent and record the run as stopped (budget): --max-turns,
--max-cost (estimated from the transcript; see docs/budgets.md) and
--timeout, enforced inside the sandbox, so they hold for detached runs too.

The agent's container has no network: everything goes through the run's own
egress proxy, which lets through only allowed hosts (the agent's own needs,
[egress] allow, the prompt's allow, --allow), holds the model credentials
(the agent sees a placeholder), scans for secrets and logs every connection
(airlock egress). The resolved policy is shown first; on a terminal, run asks
y/N unless -y is given or [egress] confirm is false.`,
		Example: `  airlock run fix-auth
  airlock run fix-auth -d
  airlock run -m "Add a --verbose flag to the CLI" --name verbose-flag
  airlock run docs/tasks/upgrade.md --model claude-opus-4-1 --max-turns 40 --env GOFLAGS=-mod=mod
  airlock run fix-auth add-tests update-docs -j 2
  airlock run fix-auth --max-cost 2.50 --timeout 45m --cache npm`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Task = firstArg(args)
			opts.Tasks = args
			opts.set = map[string]bool{}
			cmd.Flags().Visit(func(fl *pflag.Flag) { opts.set[fl.Name] = true })
			if err := validateBatchFlags(opts); err != nil {
				return err
			}
			if len(args) == 0 && !opts.set["message"] {
				return flagErrorf("give a task (airlock run TASK) or an inline prompt (-m \"...\")")
			}
			if len(args) > 0 && opts.set["message"] {
				return flagErrorf("give either a task or -m, not both")
			}
			if opts.Verbosity < 0 || opts.Verbosity > 2 {
				return flagErrorf("-v must be 0, 1 or 2, not %d", opts.Verbosity)
			}
			if opts.UI && len(args) > 1 {
				return flagErrorf("--ui opens one run's page; give one task")
			}
			if opts.Resume != "" && opts.Branch != "" {
				return flagErrorf("--branch and --resume: a resumed run continues on the earlier run's branch")
			}
			return runRun(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Message, "message", "m", "", "the prompt, inline")
	fl.BoolVarP(&opts.Detach, "detach", "d", false, "print the run ID and return at once")
	fl.BoolVar(&opts.UI, "ui", false, "run detached and open the run's page on the dashboard (airlock ui), starting it if needed")
	fl.StringVar(&opts.Name, "name", "", "run name (default: from the prompt)")
	fl.StringVar(&opts.Branch, "branch", "", "base branch (default: the current branch)")
	fl.StringVar(&opts.Agent, "agent", "", "the agent to run: "+strings.Join(agent.Names(), ", ")+" (default from config)")
	fl.StringVar(&opts.Profile, "profile", "", "apply the named profile (airlock profile ls)")
	fl.StringVar(&opts.Model, "model", "", "model for the agent")
	fl.IntVar(&opts.MaxTurns, "max-turns", 0, "stop the agent after this many turns")
	fl.StringArrayVarP(&opts.Env, "env", "e", nil, "pass NAME from your environment, or set NAME=value (repeatable)")
	fl.StringVar(&opts.Image, "image", "", "image to run the agent in")
	fl.IntVarP(&opts.Verbosity, "verbosity", "v", 1, "log detail while attached: 0, 1 or 2")
	fl.StringArrayVar(&opts.Allow, "allow", nil, "also let the agent reach this host pattern (repeatable): host, *.example.com, host:port")
	fl.StringVar(&opts.Network, "network", "", "egress mode: allowlist (default), restricted, or open (anything, still logged)")
	fl.StringVar(&opts.Runtime, "runtime", "", "OCI runtime for the agent's container, such as runsc (gVisor)")
	fl.BoolVarP(&opts.Yes, "yes", "y", false, "do not ask to confirm the egress policy")
	addGitAuthFlag(fl, &opts.GitAuth)
	fl.IntVarP(&opts.Jobs, "jobs", "j", 0, "with several tasks: run at most this many agents at once (default: all)")
	fl.Float64Var(&opts.MaxCost, "max-cost", 0, "stop the agent once the run's estimated cost reaches this many USD")
	fl.StringVar(&opts.Timeout, "timeout", "", "stop the agent after this long, such as 45m")
	fl.StringArrayVar(&opts.Caches, "cache", nil, "mount this project's shared dependency cache: npm, go or pip (repeatable)")
	fl.StringArrayVarP(&opts.Ports, "publish", "p", nil, "forward the sandbox's TCP port to the host's loopback: PORT or HOSTPORT:PORT (repeatable)")
	addLifecycleFlags(fl, &opts)
	return cmd
}

// runRun validates everything before it asks or creates anything: a bad
// prompt, config, name, variable, base branch, missing credential or image,
// or an engine that does not answer, changes nothing.
func runRun(ctx context.Context, f *Factory, opts runOptions) error {
	project, err := f.project(ctx)
	if err != nil {
		return err
	}
	if err := checkLifecycleBatch(opts); err != nil {
		return err
	}
	if len(opts.Tasks) > 1 {
		if len(opts.Ports) > 0 {
			return flagErrorf("-p forwards a port of one run; give one task")
		}
		return batchRun(ctx, f, project, opts)
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	if opts.Resume != "" {
		if opts.resumeFrom, err = f.resumeSource(ctx, m, project, opts.Resume); err != nil {
			return err
		}
	}
	req, cfg, policyText, err := f.buildRequest(ctx, project, opts)
	if err != nil {
		return err
	}
	req.Persistent = opts.Persistent
	if err := m.Check(ctx, req); err != nil {
		return err
	}
	fmt.Fprint(f.IO.ErrOut, policyText)
	asked, err := f.confirmStart("run", cfg.Egress.Confirm, opts.Yes)
	if err != nil {
		return err
	}
	// Checked a moment ago, unless a person took their time to answer.
	req.Checked = !asked
	r, err := m.Start(ctx, req)
	if err != nil {
		return err
	}
	f.startPrewarm(m, r)
	if opts.Detach || opts.UI || (cfg.Run.Detach && !opts.set["detach"]) {
		fmt.Fprintln(f.IO.Out, r.ID)
		fmt.Fprintf(f.IO.ErrOut, "Started %s on branch %s. Follow it with `airlock logs -f %s`.\n", r.ID, r.Branch, r.ID)
		f.startWatcher(m, r)
		if opts.UI {
			return f.openRunPage(ctx, m.Store, r)
		}
		return nil
	}
	fmt.Fprintf(f.IO.ErrOut, "Run %s on branch %s (Ctrl-C stops it; use -d to run detached)\n\n", r.ID, r.Branch)
	// This process is the run's supervisor while it follows the log, and
	// forwards its ports until it has ended.
	sctx, stopSupervising := context.WithCancel(ctx)
	go m.Supervise(sctx, r)
	pctx, stopPorts := context.WithCancel(ctx)
	defer stopPorts()
	m.ServePorts(pctx, r, f.IO.ErrOut)
	err = showLog(ctx, f, m, r, logsOptions{Follow: true, Verbosity: opts.Verbosity})
	stopSupervising()
	if errors.Is(err, untrusted.ErrNotRegular) && ctx.Err() == nil {
		// The agent replaced its transcript with a link, a FIFO or the
		// like: the run goes on, watched through the engine instead.
		fmt.Fprintf(f.IO.ErrOut, "warning: not following the log of %s: %s\n", r.ID, untrusted.Line(err.Error()))
		err = nil
	}
	var finished *store.Run
	if err == nil {
		finished, err = m.Wait(ctx, r)
	}
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		fmt.Fprintf(f.IO.ErrOut, "\nStopping %s…\n", r.ID)
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if r, err = m.Stop(stopCtx, r, 5*time.Second); err != nil {
			return err
		}
		fmt.Fprint(f.IO.ErrOut, nextSteps(r))
		return &ExitError{Code: ExitCanceled}
	}
	if err != nil {
		return err
	}
	r = finished
	fmt.Fprintln(f.IO.ErrOut)
	f.bell()
	return outcome(f, r)
}

// buildRequest resolves config, prompt, flags, environment and credentials
// into a run request.
func (f *Factory) buildRequest(ctx context.Context, project string, opts runOptions) (run.Request, *config.Config, string, error) {
	res, err := f.loadConfig(project)
	if err != nil {
		return run.Request{}, nil, "", err
	}
	p, err := f.loadPrompt(project, opts)
	if err != nil {
		return run.Request{}, nil, "", err
	}
	var profile *config.Profile
	if opts.Profile != "" {
		if profile, err = res.ApplyProfile(opts.Profile, "--profile"); err != nil {
			return run.Request{}, nil, "", err
		}
	}
	if err := res.ApplyPrompt(p); err != nil {
		return run.Request{}, nil, "", err
	}
	for _, a := range opts.Allow {
		if err := res.Set("egress.allow", a, "flag --allow"); err != nil {
			return run.Request{}, nil, "", flagErrorf("%v", err)
		}
	}
	if opts.set["git-auth"] {
		if err := res.Set("egress.git_auth", opts.GitAuth, "flag --git-auth"); err != nil {
			return run.Request{}, nil, "", flagErrorf("%v", err)
		}
	}
	if err := f.applyGitAuth(res); err != nil {
		return run.Request{}, nil, "", err
	}
	if err := applyBudgetFlags(res, opts); err != nil {
		return run.Request{}, nil, "", err
	}
	if r := opts.resumeFrom; r != nil && !opts.set["agent"] && r.Agent != "" {
		// A conversation continues with the agent that had it.
		if err := res.Set("agent.name", r.Agent, "the resumed run "+r.ID); err != nil {
			return run.Request{}, nil, "", err
		}
	}
	for flag, key := range map[string]string{"agent": "agent.name", "model": "agent.model", "max-turns": "agent.max_turns", "image": "image.name", "network": "egress.mode", "runtime": "sandbox.runtime"} {
		if !opts.set[flag] {
			continue
		}
		var value string
		switch flag {
		case "agent":
			value = opts.Agent
		case "model":
			value = opts.Model
		case "max-turns":
			value = strconv.Itoa(opts.MaxTurns)
		case "image":
			value = opts.Image
		case "network":
			value = opts.Network
		case "runtime":
			value = opts.Runtime
		}
		if err := res.Set(key, value, "flag --"+flag); err != nil {
			return run.Request{}, nil, "", err
		}
	}
	cfg := res.Config
	if r := opts.resumeFrom; r != nil {
		from, to := agent.MustLookup(r.Agent), agent.MustLookup(cfg.Agent.Name)
		if from.Name() != to.Name() {
			return run.Request{}, nil, "", flagErrorf("run %s was %s's conversation; %s cannot continue it (leave out --agent, or start a new run)", r.ID, from.Title(), to.Title())
		}
	}

	// The name: --name, else the prompt's name: key, else a resumed run's,
	// else one made from the prompt's file name or words.
	name := p.Name
	if opts.resumeFrom != nil && p.Lines["name"] == 0 {
		name = opts.resumeFrom.Name
	}
	if opts.set["name"] {
		name = opts.Name
		if err := prompt.ValidateName(name); err != nil {
			return run.Request{}, nil, "", flagErrorf("--name: %v", err)
		}
	} else if err := prompt.ValidateName(name); err != nil {
		return run.Request{}, nil, "", flagErrorf("run name %q: %v", name, err)
	}

	env, err := f.sandboxEnv(cfg, p, project, opts.Env)
	if err != nil {
		return run.Request{}, nil, "", err
	}
	eg, policyText, err := f.runEgress(ctx, res, env)
	if err != nil {
		return run.Request{}, nil, "", err
	}

	base, err := f.runBase(ctx, project, p, opts)
	if err != nil {
		return run.Request{}, nil, "", err
	}
	ref, dev, err := f.runImage(project, res)
	if err != nil {
		return run.Request{}, nil, "", err
	}
	// The dev container's lifecycle commands (postCreateCommand ...) run
	// first, as in a dev container: the configured ones may rely on them.
	setup := cfg.Sandbox.Setup
	if dev != nil && len(dev.Setup) > 0 {
		setup = append(append([]string{}, dev.Setup...), setup...)
	}
	mounts, err := f.runMounts(ctx, res, project)
	if err != nil {
		return run.Request{}, nil, "", err
	}
	policyText += describeMounts(mounts) + describeSetup(res)
	ports, err := parsePorts(opts.Ports)
	if err != nil {
		return run.Request{}, nil, "", err
	}
	source := "inline"
	if p.Path != "" {
		source = p.Path
	}
	body := p.Body
	var bring []string
	if profile != nil {
		if profile.Preamble != "" {
			body = profile.Preamble + "\n\n" + body
		}
		bring = profile.Bring
	}
	return run.Request{
		Project:      project,
		Name:         name,
		PromptSource: source,
		Prompt:       body,
		Bring:        bring,
		BringFrom:    f.Getenv("HOME"),
		BaseBranch:   base,
		Image:        ref,
		Agent:        agent.MustLookup(cfg.Agent.Name),
		Model:        cfg.Agent.Model,
		MaxTurns:     cfg.Agent.MaxTurns,
		Env:          env,
		Limits:       sandbox.Limits{MemoryBytes: cfg.Sandbox.MemoryBytes, CPUs: cfg.Sandbox.CPUs, Pids: cfg.Sandbox.Pids},
		DiskBytes:    cfg.Sandbox.DiskBytes,
		Runtime:      cfg.Sandbox.Runtime,
		Egress:       eg,
		Budget:       run.Budget{MaxCostUSD: cfg.Run.MaxCostUSD, Timeout: cfg.Run.Timeout},
		Caches:       cfg.Sandbox.Caches,
		Notify:       notify.Config{Desktop: cfg.Notify.Desktop, Webhook: cfg.Notify.Webhook},
		Resume:       opts.resumeFrom,
		Here:         opts.here,
		Mounts:       mounts,
		Setup:        setup,
		Ports:        ports,
	}, &cfg, policyText, nil
}

// runBase is the branch a run starts from — --branch, the prompt's branch:,
// else the current branch — checked to name a commit in the project, so
// that a typo or a repository without commits is reported, saying where the
// name came from, before anything is asked or made. A resumed run's base is
// the earlier run's work, which the run manager finds; --here has none.
func (f *Factory) runBase(ctx context.Context, project string, p *prompt.Prompt, opts runOptions) (string, error) {
	if opts.resumeFrom != nil && !opts.resumeFrom.Here && !opts.here {
		return "", nil
	}
	base, from := p.Branch, fmt.Sprintf("%s:%d: branch", p.Path, p.Lines["branch"])
	if opts.Branch != "" {
		base, from = opts.Branch, "--branch"
	}
	if base == "" {
		var err error
		if base, err = workspace.CurrentBranch(ctx, project); err != nil {
			return "", err
		}
		from = ""
	}
	if opts.here {
		return base, nil
	}
	if _, err := workspace.ResolveBase(ctx, project, base); err != nil {
		if from != "" {
			return "", fmt.Errorf("%s: %w", from, err)
		}
		return "", err
	}
	return base, nil
}

// loadPrompt reads TASK as a prompt of the project (.airlock/prompts/TASK.md,
// or .airlock/prompts/TASK when TASK ends in .md) or as a path, or makes a
// prompt of -m.
func (f *Factory) loadPrompt(project string, opts runOptions) (*prompt.Prompt, error) {
	if opts.set["message"] || opts.Message != "" {
		name := opts.Name
		if name == "" {
			name = prompt.NameFromPath(firstWords(opts.Message, 4) + ".md")
		}
		p, err := prompt.Inline(opts.Message, name)
		if err != nil {
			return nil, flagErrorf("%v", err)
		}
		return p, nil
	}
	if opts.Task == "" || strings.TrimSpace(opts.Task) != opts.Task {
		return nil, flagErrorf("task %q: give a prompt's name (fix-auth, for .airlock/prompts/fix-auth.md) or a path", opts.Task)
	}
	prompts := filepath.Join(project, ".airlock", "prompts")
	named := []string{filepath.Join(prompts, opts.Task+".md")}
	if strings.HasSuffix(opts.Task, ".md") {
		named = append(named, filepath.Join(prompts, opts.Task))
	}
	var path string
	explicit := filepath.IsAbs(opts.Task) || strings.HasPrefix(opts.Task, "./") || strings.HasPrefix(opts.Task, "../")
	if explicit || strings.ContainsAny(opts.Task, "/.") {
		path = opts.Task
		if !filepath.IsAbs(path) {
			wd, err := f.Getwd()
			if err != nil {
				return nil, err
			}
			path = filepath.Join(wd, path)
		}
	}
	if explicit {
		named = nil // ./x.md is that file, never a prompt of the project
	}
	var found []string
	for _, c := range append([]string{path}, named...) {
		if c == "" {
			continue
		}
		fi, err := os.Stat(c)
		if err != nil || fi.IsDir() {
			continue
		}
		if len(found) > 0 {
			if prev, err := os.Stat(found[0]); err == nil && os.SameFile(prev, fi) {
				continue
			}
		}
		found = append(found, c)
	}
	switch len(found) {
	case 0:
		looked := named
		if path != "" {
			looked = append([]string{path}, named...)
		}
		return nil, fmt.Errorf("no prompt %q: looked for %s (create it, or see `airlock init`)", opts.Task, strings.Join(looked, " and "))
	case 1:
		return prompt.Load(found[0])
	}
	return nil, fmt.Errorf("prompt %q is ambiguous: it names both %s; give the path of the one you mean", opts.Task, strings.Join(found, " and "))
}

func firstWords(s string, n int) string {
	words := strings.Fields(strings.ToLower(s))
	if len(words) > n {
		words = words[:n]
	}
	return strings.Join(words, "-")
}

// sandboxEnv resolves the variables the agent gets: config env and env_file,
// then the prompt's, then --env; a later entry for the same name wins.
func (f *Factory) sandboxEnv(cfg config.Config, p *prompt.Prompt, project string, flags []string) ([]string, error) {
	var entries []string
	if cfg.Sandbox.EnvFile != "" {
		fromFile, err := prompt.LoadEnvFile(cfg.Sandbox.EnvFile)
		if err != nil {
			return nil, err
		}
		entries = append(entries, fromFile...)
	}
	cfgEnv, err := prompt.ParseEnv(cfg.Sandbox.Env, f.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("[sandbox] env: %w", err)
	}
	entries = append(entries, cfgEnv...)
	if f.inside(project, p.Path) {
		// A prompt of the repository is anyone's, like its config.
		for _, e := range p.Env {
			if !strings.Contains(e, "=") {
				return nil, fmt.Errorf("%s: env: %q would copy your environment's %s into the sandbox, which a prompt file of the repository may not do; write %s=value, or pass it yourself with --env %s", p.Path, e, e, e, e)
			}
		}
	}
	promptEnv, err := prompt.ParseEnv(p.Env, f.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: env: %w", p.Path, err)
	}
	entries = append(entries, promptEnv...)
	flagEnv, err := prompt.ParseEnv(flags, f.LookupEnv)
	if err != nil {
		return nil, flagErrorf("--env: %v", err)
	}
	entries = append(entries, flagEnv...)
	for _, e := range entries {
		name, _, _ := strings.Cut(e, "=")
		if isCredentialName(name) {
			return nil, fmt.Errorf("%s is a credential: set it with `airlock credentials set %s` or in your environment, not with --env or config", name, name)
		}
	}
	return entries, nil
}

func isCredentialName(name string) bool {
	for _, n := range agent.AllCredentialNames() {
		if n == name {
			return true
		}
	}
	return false
}

// runEgress resolves a run's egress: the policy, the credentials the proxy
// injects (environment first, then the credentials file), the model API
// upstream (a gateway, if configured) and the CAs the proxy trusts. It
// returns the policy as shown to people too.
func (f *Factory) runEgress(ctx context.Context, res *config.Resolved, env []string) (run.Egress, string, error) {
	cfg := res.Config
	policy, sources, err := resolvePolicy(res)
	if err != nil {
		return run.Egress{}, "", err
	}
	ag, err := agent.Lookup(cfg.Agent.Name)
	if err != nil {
		return run.Egress{}, "", err
	}
	auth, err := f.agentAuth(ag)
	if err != nil {
		return run.Egress{}, "", err
	}
	cloud, err := f.cloudEgress(ctx, ag, auth)
	if err != nil {
		return run.Egress{}, "", err
	}
	if err := injectionsAllowed(policy, cfg.Egress.Inject); err != nil {
		return run.Egress{}, "", err
	}
	inject, err := f.runInjections(ctx, cfg.Egress.Inject, env)
	if err != nil {
		return run.Egress{}, "", err
	}
	upstream := cfg.Agent.Selected().BaseURL
	if upstream == "" && auth.GatewayEnv != "" {
		upstream, _ = f.LookupEnv(auth.GatewayEnv)
	}
	var ca []byte
	for _, path := range cfg.Image.CACertificates {
		pem, err := os.ReadFile(path)
		if os.IsNotExist(err) && res.From("image.ca_certificates") == config.FromDefault {
			continue
		}
		if err != nil {
			return run.Egress{}, "", fmt.Errorf("image.ca_certificates (%s): %w", res.From("image.ca_certificates"), err)
		}
		ca = append(append(ca, pem...), '\n')
	}
	for _, path := range cfg.Egress.CACertificates {
		pem, err := os.ReadFile(path)
		if err != nil {
			return run.Egress{}, "", fmt.Errorf("egress.ca_certificates (%s): %w", res.EntryFrom("egress.ca_certificates", path), err)
		}
		ca = append(append(ca, pem...), '\n')
	}
	sshEg, err := f.sshEgress(res, policy)
	if err != nil {
		return run.Egress{}, "", err
	}
	var allow, deny []string
	for _, r := range policy.Allow {
		allow = append(allow, r.String()) // with its port, if any
	}
	for _, r := range policy.Deny {
		deny = append(deny, r.String())
	}
	return run.Egress{
		Mode:        string(policy.Mode),
		Allow:       allow,
		Deny:        deny,
		AllowCIDRs:  cfg.Egress.AllowCIDRs,
		Network:     cfg.Egress.Network,
		ExtraHosts:  cfg.Egress.ExtraHosts,
		APIUpstream: upstream,
		Auth:        auth,
		CACerts:     ca,
		Inject:      inject,
		Scan:        cfg.Egress.ScanConfig(),
		SSH:         sshEg,
		Cloud:       cloud,
	}, describePolicy(policy, sources, cfg.Egress.AllowCIDRs) + describeCloud(cloud) + describeInjections(inject) + describeSSH(sshEg), nil
}

// agentAuth finds the agent's model credentials: the environment first,
// then the credentials file.
func (f *Factory) agentAuth(ag agent.Agent) (agent.APIAuth, error) {
	lookup, err := f.credentialLookup(ag)
	if err != nil {
		return agent.APIAuth{}, err
	}
	return ag.API(lookup)
}

// inside reports whether path (a prompt file's) is in the project's
// directory tree; "" is nowhere. When it cannot tell, it says yes.
func (f *Factory) inside(project, path string) bool {
	if project == "" || path == "" {
		return false
	}
	if !filepath.IsAbs(path) {
		wd, err := f.Getwd()
		if err != nil {
			return true
		}
		path = filepath.Join(wd, path)
	}
	real := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		return filepath.Clean(p)
	}
	rel, err := filepath.Rel(real(project), real(path))
	return err != nil || (rel != ".." && !strings.HasPrefix(rel, "../"))
}
