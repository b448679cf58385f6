package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/egress"
)

func newProxyCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "The egress proxy: check a URL against the policy",
	}
	var opts proxyServeOptions
	serve := &cobra.Command{
		Use:    "serve --config FILE [--tcp-proxy ADDR] [--tcp-api ADDR]",
		Short:  "Run a run's egress proxy (inside its sidecar container)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.ErrOut = f.IO.ErrOut
			return proxyServe(cmd.Context(), opts)
		},
	}
	serve.Flags().StringVar(&opts.ConfigPath, "config", "", "the sidecar's configuration file")
	serve.Flags().StringVar(&opts.TCPProxy, "tcp-proxy", "", "serve the proxy on this TCP address (the channel keyed by $"+egress.ChannelKeyEnv+") instead of the config's proxy socket")
	serve.Flags().StringVar(&opts.TCPAPI, "tcp-api", "", "serve the model-API endpoint on this TCP address (the channel keyed by $"+egress.ChannelKeyEnv+") instead of the config's API socket")
	check := &cobra.Command{
		Use:   "check URL",
		Short: "Would the project's egress policy allow this URL, and why",
		Long: `Decide a URL the way a run's egress proxy would, by name and port, under this
project's resolved policy (built-in defaults, config files, --allow), and say
which rule decided. A destination needs an allow rule: a name pattern, or for
an IP address an allow rule naming that address (with its port). [egress]
allow_cidrs only exempts addresses from the private/special-address filter;
for an IP address the check says whether such an exemption applies. Names
are not resolved: a run's proxy also refuses names that resolve to private,
loopback or link-local addresses unless [egress] allow_cidrs lists them.

Exit status 0 if allowed, 1 if denied.`,
		Example: "  airlock proxy check https://registry.npmjs.org/left-pad\n  airlock proxy check --allow '*.example.org' https://api.example.org/v1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			allow, _ := cmd.Flags().GetStringArray("allow")
			mode, _ := cmd.Flags().GetString("network")
			return proxyCheck(cmd.Context(), f, args[0], allow, mode)
		},
	}
	check.Flags().StringArray("allow", nil, "also allow this host pattern (as airlock run --allow does)")
	check.Flags().String("network", "", "mode to check under: allowlist, restricted or open")
	cmd.AddCommand(serve, check)
	return cmd
}

// proxyServeOptions are proxy serve's flags. TCPProxy and TCPAPI, when
// set, replace the configuration's Unix sockets by TCP listeners that
// admit only the relay's channel (egress.ChannelListener): the agent is
// then another pod, not a container sharing the socket directory.
type proxyServeOptions struct {
	ConfigPath string
	TCPProxy   string
	TCPAPI     string
	ErrOut     io.Writer
}

// proxyServe runs inside the sidecar: no terminal, no host environment,
// only the mounted configuration.
func proxyServe(ctx context.Context, opts proxyServeOptions) error {
	var key egress.ChannelKey
	if opts.TCPProxy != "" || opts.TCPAPI != "" {
		var err error
		if key, err = egress.TakeChannelKey(); err != nil {
			return fmt.Errorf("proxy: --tcp-proxy/--tcp-api: %w", err)
		}
	}
	path := opts.ConfigPath
	var cfg egress.SidecarConfig
	if err := egress.ReadJSON(path, &cfg); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	var secrets egress.SidecarSecrets
	if err := egress.ReadJSON(cfg.SecretsFile, &secrets); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	os.Remove(cfg.SecretsFile)
	policy, err := egress.NewPolicy(cfg.Mode, cfg.Allow, cfg.Deny, cfg.AllowCIDRs)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	upstream, err := url.Parse(cfg.APIUpstream)
	if err != nil {
		return fmt.Errorf("proxy: api upstream: %w", err)
	}
	logFile, err := os.OpenFile(cfg.AuditLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	defer logFile.Close()
	audit := egress.NewAuditLog(logFile)
	api := &egress.APIConfig{Upstream: upstream, Headers: secrets.APIHeaders, Routes: cfg.APIRoutes,
		Strip: cfg.APIStrip, Usage: cfg.APIUsage, Provider: cfg.APIProvider, Region: cfg.APIRegion, Cloud: cfg.APICloud}
	if secrets.Cloud != nil {
		api.CloudCredentials = *secrets.Cloud
	}
	srv, err := egress.NewServer(egress.Config{
		Policy: policy,
		Held:   secrets.Held,
		Scan:   cfg.ScanConfig(),
		API:    api,
		Audit:  audit,
		Budget: egress.Budget{
			MaxCostUSD: cfg.MaxCostUSD, MaxTurns: cfg.MaxTurns, Deadline: cfg.Deadline, Timeout: cfg.Timeout,
		},
		MeterFile: cfg.MeterPath(),
		Inject:    secrets.Inject,
		CA:        secrets.CA,
	})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	listen := func(path string) (net.Listener, error) {
		os.Remove(path)
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		// The agent's container shares the directory, not the uid's
		// guarantee: make the socket connectable.
		return ln, os.Chmod(path, 0o666)
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(opts.ErrOut, "airlock proxy: "+format+"\n", args...)
	}
	listenChannel := func(addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		return egress.ChannelListener(ln, key, logf), nil
	}
	listenEither := func(tcpAddr, socket string) (net.Listener, error) {
		if tcpAddr != "" {
			return listenChannel(tcpAddr)
		}
		return listen(socket)
	}
	proxyLn, err := listenEither(opts.TCPProxy, cfg.ProxySocket)
	if err != nil {
		return err
	}
	apiLn, err := listenEither(opts.TCPAPI, cfg.APISocket)
	if err != nil {
		return err
	}
	if cfg.SSHAgent != nil {
		stop, err := serveSSHAgent(ctx, *cfg.SSHAgent, secrets.SSHKeys, audit, listen)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.APICloud != nil && cfg.CredentialsFile != "" {
		go srv.WatchCredentials(ctx, cfg.CredentialsFile, func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, format+"\n", args...)
		})
	}
	return srv.Serve(ctx, proxyLn, apiLn)
}

func proxyCheck(ctx context.Context, f *Factory, raw string, allow []string, mode string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return flagErrorf("%q is not a URL such as https://example.com/path", raw)
	}
	project, _ := f.project(ctx)
	res, err := f.loadConfig(project)
	if err != nil {
		return err
	}
	for _, a := range allow {
		if err := res.Set("egress.allow", a, "flag --allow"); err != nil {
			return &FlagError{err: err}
		}
	}
	if mode != "" {
		if err := res.Set("egress.mode", mode, "flag --network"); err != nil {
			return &FlagError{err: err}
		}
	}
	policy, sources, err := resolvePolicy(res)
	if err != nil {
		return err
	}
	port := 443
	switch u.Scheme {
	case "http":
		port = 80
	case "ssh":
		port = egress.SSHPort
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return flagErrorf("bad port in %q", raw)
		}
	}
	host := u.Hostname()
	d := policy.Decide(host, port)
	if !d.Allowed {
		return &ExitError{Code: ExitFailure, Message: fmt.Sprintf("denied: %s:%d: %s", host, port, d.Reason)}
	}
	from := sources[d.Rule]
	if from == "" {
		from = sources[strings.SplitN(d.Rule, ":", 2)[0]]
	}
	if from != "" {
		from = " (" + from + ")"
	}
	why := d.Reason
	if d.Rule != "" {
		why = "rule " + d.Rule + from
	}
	// The address stage: an allow rule is necessary, and for a private or
	// special address an allow_cidrs range must exempt it too.
	addrNote := "the proxy also refuses the name if it resolves to a private, loopback or link-local address not in [egress] allow_cidrs"
	if policy.Mode == egress.ModeOpen {
		addrNote = "open mode: every address may be reached"
	} else if a, err := netip.ParseAddr(host); err == nil {
		cidr, what, exempt := policy.Exemption(a)
		switch {
		case what == "":
			addrNote = "a public address"
		case exempt:
			addrNote = fmt.Sprintf("%s is %s, exempted by allow_cidrs %s%s", a.Unmap(), what, cidr, cidrSource(res, cidr))
		default:
			return &ExitError{Code: ExitFailure, Message: fmt.Sprintf("denied: %s:%d: allowed by %s, but %s is %s and no [egress] allow_cidrs range exempts it", host, port, why, a.Unmap(), what)}
		}
	}
	fmt.Fprintf(f.IO.Out, "allowed: %s:%d by %s under %s mode; %s\n", host, port, why, policy.Mode, addrNote)
	return nil
}

// cidrSource says where the allow_cidrs entry for cidr came from.
func cidrSource(res *config.Resolved, cidr netip.Prefix) string {
	for _, c := range res.Config.Egress.AllowCIDRs {
		if p, err := egress.ParseCIDR(c, ""); err == nil && p == cidr {
			if from := res.EntryFrom("egress.allow_cidrs", c); from != "" {
				return " (" + from + ")"
			}
		}
	}
	return ""
}

// resolvePolicy is the egress policy a run of this configuration gets: the
// agent's built-in needs plus the configured lists. sources maps each
// allow pattern to where it came from.
func resolvePolicy(res *config.Resolved) (egress.Policy, map[string]string, error) {
	eg := res.Config.Egress
	sources := map[string]string{}
	ag, err := agent.Lookup(res.Config.Agent.Name)
	if err != nil {
		return egress.Policy{}, nil, err
	}
	allow := ag.DefaultAllow()
	for _, a := range allow {
		sources[a] = "built in for " + ag.Name()
	}
	for _, a := range eg.Allow {
		if _, ok := sources[a]; !ok {
			sources[a] = res.EntryFrom("egress.allow", a)
			allow = append(allow, a)
		}
	}
	for _, d := range eg.Deny {
		sources[d] = res.EntryFrom("egress.deny", d)
	}
	p, err := egress.NewPolicy(eg.Mode, allow, eg.Deny, eg.AllowCIDRs)
	return p, sources, err
}

// describePolicy renders the policy for people, before a run.
func describePolicy(p egress.Policy, sources map[string]string, allowCIDRs []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Egress: %s mode", p.Mode)
	switch string(p.Mode) {
	case "open":
		b.WriteString(" — the agent may reach any host (every connection is logged)\n")
	case "restricted":
		b.WriteString(" — any public address; nothing private\n")
	default:
		b.WriteString(" — only these hosts:\n")
		for _, r := range p.Allow {
			fmt.Fprintf(&b, "  allow  %-32s %s\n", r.Pattern, sources[r.Pattern])
		}
	}
	for _, r := range p.Deny {
		fmt.Fprintf(&b, "  deny   %-32s %s\n", r.Pattern, sources[r.Pattern])
	}
	for _, c := range allowCIDRs {
		fmt.Fprintf(&b, "  cidr   %-32s allowed names and IP rules may be private addresses in it\n", c)
	}
	b.WriteString("  (the model API is reached through the proxy, which holds the credentials)\n")
	return b.String()
}

// serveSSHAgent offers the sandbox its filtered ssh-agent until ctx ends or
// stop is called.
func serveSSHAgent(ctx context.Context, cfg egress.SSHAgentConfig, keys []string, audit *egress.AuditLog, listen func(string) (net.Listener, error)) (stop func(), err error) {
	a, err := egress.NewSSHAgent(cfg, keys, audit)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	ln, err := listen(cfg.Socket)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Serve(ctx, ln)
	}()
	return func() { cancel(); <-done }, nil
}
