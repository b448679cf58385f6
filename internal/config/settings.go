package config

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/reference"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/forge"
	"github.com/airlock-dev/airlock/internal/prompt"
)

// kind is the TOML type a setting takes.
type kind int

const (
	kindString kind = iota
	kindInt
	kindFloat
	kindBool
	kindList // of strings
)

func (k kind) String() string {
	return [...]string{"text", "a whole number", "a number", "true or false", "a list of strings"}[k]
}

// setting is one configuration key: how to validate and store a value of it,
// and how to show the current value as TOML.
type setting struct {
	key  string
	kind kind
	// apply validates v (string, int64, float64, bool or []string, per kind)
	// and stores it in c. Relative paths are resolved against dir.
	apply func(c *Config, v any, dir string) error
	show  func(c *Config) string
}

// settings is the schema, sorted by key.
var settings = withAgentSettings([]setting{
	{"agent.max_turns", kindInt, func(c *Config, v any, _ string) error {
		n := v.(int64)
		if n < 0 || n > math.MaxInt32 {
			return fmt.Errorf("must be 0 (no limit) or a positive number of turns, got %d", n)
		}
		c.Agent.MaxTurns = int(n)
		return nil
	}, func(c *Config) string { return strconv.Itoa(c.Agent.MaxTurns) }},

	{"agent.model", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if err := noSpaces(s); err != nil {
			return err
		}
		c.Agent.Model = s
		return nil
	}, func(c *Config) string { return quote(c.Agent.Model) }},

	{"agent.name", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if _, err := agent.Lookup(s); err != nil {
			return err
		}
		c.Agent.Name = s
		return nil
	}, func(c *Config) string { return quote(c.Agent.Name) }},

	{"egress.allow", kindList, func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			if _, err := egress.ParseRule(e, ""); err != nil {
				return err
			}
		}
		c.Egress.Allow = appendNew(c.Egress.Allow, v.([]string))
		return nil
	}, nil},

	{"egress.allow_cidrs", kindList, func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			if _, err := egress.ParseCIDR(e, ""); err != nil {
				return err
			}
		}
		c.Egress.AllowCIDRs = appendNew(c.Egress.AllowCIDRs, v.([]string))
		return nil
	}, nil},

	{"egress.allow_wide_cidrs", kindBool, func(c *Config, v any, _ string) error {
		c.Egress.AllowWideCIDRs = v.(bool)
		return nil
	}, func(c *Config) string { return strconv.FormatBool(c.Egress.AllowWideCIDRs) }},

	{"egress.ca_certificates", kindList, func(c *Config, v any, dir string) error {
		out, err := caPaths(v.([]string), dir)
		if err != nil {
			return err
		}
		c.Egress.CACertificates = appendNew(c.Egress.CACertificates, out)
		return nil
	}, nil},

	{"egress.confirm", kindBool, func(c *Config, v any, _ string) error {
		c.Egress.Confirm = v.(bool)
		return nil
	}, func(c *Config) string { return strconv.FormatBool(c.Egress.Confirm) }},

	{"egress.deny", kindList, func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			if _, err := egress.ParseRule(e, ""); err != nil {
				return err
			}
		}
		c.Egress.Deny = appendNew(c.Egress.Deny, v.([]string))
		return nil
	}, nil},

	{"egress.extra_hosts", kindList, func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			name, addr, ok := strings.Cut(e, ":")
			if _, err := netip.ParseAddr(addr); !ok || name == "" || err != nil {
				return fmt.Errorf("%q is not name:address (like docker --add-host), e.g. \"api.internal:10.1.2.3\"", e)
			}
		}
		c.Egress.ExtraHosts = appendNew(c.Egress.ExtraHosts, v.([]string))
		return nil
	}, nil},

	{"egress.git_auth", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" {
			r, err := egress.ParseRule(s, "")
			if err != nil {
				return err
			}
			if _, isIP := ipLiteral(r.Pattern); isIP || strings.HasPrefix(r.Pattern, "*.") {
				return fmt.Errorf("%q: give the git host's name, such as \"github.com\" (no wildcard, no IP address)", s)
			}
		}
		c.Egress.GitAuth = s
		return nil
	}, func(c *Config) string { return quote(c.Egress.GitAuth) }},

	{"egress.mode", kindString, func(c *Config, v any, _ string) error {
		m, err := egress.ParseMode(v.(string))
		if err != nil {
			return err
		}
		c.Egress.Mode = string(m)
		return nil
	}, func(c *Config) string { return quote(c.Egress.Mode) }},

	{"egress.scan", kindString, func(c *Config, v any, _ string) error {
		m, err := egress.ParseScanMode(v.(string))
		if err != nil {
			return err
		}
		c.Egress.Scan = string(m)
		return nil
	}, func(c *Config) string { return quote(c.Egress.Scan) }},

	{"egress.scan_block", kindList, scanHosts(func(c *Config) *[]string { return &c.Egress.ScanBlock }), nil},

	{"egress.scan_body_kib", kindInt, func(c *Config, v any, _ string) error {
		n := v.(int64)
		if n < 0 || n > 64<<10 {
			return fmt.Errorf("must be a number of KiB from 0 (no body scanning) to 65536, got %d", n)
		}
		c.Egress.ScanBodyKiB = int(n)
		return nil
	}, func(c *Config) string { return strconv.Itoa(c.Egress.ScanBodyKiB) }},

	{"egress.scan_log", kindList, scanHosts(func(c *Config) *[]string { return &c.Egress.ScanLog }), nil},

	{"egress.scan_off", kindList, scanHosts(func(c *Config) *[]string { return &c.Egress.ScanOff }), nil},

	{"egress.network", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if err := noSpaces(s); err != nil {
			return err
		}
		c.Egress.Network = s
		return nil
	}, func(c *Config) string { return quote(c.Egress.Network) }},

	{"egress.ssh.hosts", kindList, func(c *Config, v any, _ string) error {
		for _, h := range v.([]string) {
			if h == "" || strings.ContainsAny(h, " :/@") || strings.ToLower(h) != h {
				return fmt.Errorf("%q: give a lower-case host name or *.domain pattern, without a port, such as \"github.com\"", h)
			}
		}
		c.Egress.SSH.Hosts = append([]string(nil), v.([]string)...)
		return nil
	}, func(c *Config) string { return quoteList(c.Egress.SSH.Hosts) }},

	{"egress.ssh.key_file", kindString, func(c *Config, v any, dir string) error {
		s, err := sshPath(dir, v.(string))
		if err != nil || s == "" {
			c.Egress.SSH.KeyFile = s
			return err
		}
		if _, _, err := egress.LoadSSHKeyFile(s); err != nil {
			return err
		}
		c.Egress.SSH.KeyFile = s
		return nil
	}, func(c *Config) string { return quote(c.Egress.SSH.KeyFile) }},

	{"egress.ssh.keys", kindList, func(c *Config, v any, dir string) error {
		var out []string
		for _, e := range v.([]string) {
			if !strings.HasPrefix(e, "SHA256:") {
				var err error
				if e, err = sshPath(dir, e); err != nil {
					return err
				}
			}
			if _, err := egress.SSHKeyFingerprint(e); err != nil {
				return err
			}
			out = append(out, e)
		}
		c.Egress.SSH.Keys = out
		return nil
	}, func(c *Config) string { return quoteList(c.Egress.SSH.Keys) }},

	{"egress.ssh.known_hosts", kindList, func(c *Config, v any, dir string) error {
		var out []string
		for _, e := range v.([]string) {
			p, err := sshPath(dir, e)
			if err != nil {
				return err
			}
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("known_hosts file: %w", err)
			}
			out = append(out, p)
		}
		c.Egress.SSH.KnownHosts = out
		return nil
	}, func(c *Config) string { return quoteList(c.Egress.SSH.KnownHosts) }},

	{"engine.kind", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		switch s {
		case "", "docker", "podman", "incus", "kubernetes":
		default:
			return fmt.Errorf("%q is not an engine; write \"docker\", \"podman\", \"incus\" or \"kubernetes\", or \"\" to detect one", s)
		}
		c.Engine.Kind = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Kind) }},

	{"engine.incus.nesting", kindBool, func(c *Config, v any, _ string) error {
		c.Engine.Incus.Nesting = v.(bool)
		return nil
	}, func(c *Config) string { return strconv.FormatBool(c.Engine.Incus.Nesting) }},

	{"engine.incus.network", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" && !incusNameRE.MatchString(s) {
			return fmt.Errorf("%q is not an Incus network name (letters, digits and -, at most 15 characters)", s)
		}
		c.Engine.Incus.Network = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Incus.Network) }},

	{"engine.incus.pool", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" && !incusNameRE.MatchString(s) {
			return fmt.Errorf("%q is not an Incus storage pool name (letters, digits and -)", s)
		}
		c.Engine.Incus.Pool = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Incus.Pool) }},

	{"engine.kubernetes.cluster_cidrs", kindList, func(c *Config, v any, _ string) error {
		var out []string
		for _, e := range v.([]string) {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return fmt.Errorf("%q is not a CIDR range such as \"10.244.0.0/16\"", e)
			}
			out = append(out, p.Masked().String())
		}
		c.Engine.Kubernetes.ClusterCIDRs = out
		return nil
	}, func(c *Config) string { return quoteList(c.Engine.Kubernetes.ClusterCIDRs) }},

	{"engine.kubernetes.context", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if err := noSpaces(s); err != nil {
			return err
		}
		c.Engine.Kubernetes.Context = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Kubernetes.Context) }},

	{"engine.kubernetes.kubeconfig", kindString, func(c *Config, v any, dir string) error {
		// Not checked for existence here: the engine says what is
		// wrong with it when it is used.
		s, err := sshPath(dir, v.(string))
		if err != nil {
			return err
		}
		c.Engine.Kubernetes.Kubeconfig = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Kubernetes.Kubeconfig) }},

	{"engine.kubernetes.namespace", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" && !dnsLabelRE.MatchString(s) {
			return fmt.Errorf("%q is not a namespace name (lower-case letters, digits and -, at most 63 characters)", s)
		}
		c.Engine.Kubernetes.Namespace = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Kubernetes.Namespace) }},

	{"engine.kubernetes.node_selector", kindList, func(c *Config, v any, _ string) error {
		var out []string
		for _, e := range v.([]string) {
			k, val, ok := strings.Cut(e, "=")
			if !ok || !labelKeyRE.MatchString(k) || (val != "" && !labelValueRE.MatchString(val)) {
				return fmt.Errorf("%q is not a node label: write label=value, such as \"kubernetes.io/arch=amd64\"", e)
			}
			out = append(out, e)
		}
		c.Engine.Kubernetes.NodeSelector = out
		return nil
	}, func(c *Config) string { return quoteList(c.Engine.Kubernetes.NodeSelector) }},

	{"engine.kubernetes.registry", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if err := noSpaces(s); err != nil {
			return err
		}
		if strings.Contains(s, "://") {
			return fmt.Errorf("%q: name the registry without a scheme, such as \"registry.example.com/team\"", s)
		}
		s = strings.TrimSuffix(s, "/")
		if err := checkRegistry(s); err != nil {
			return err
		}
		c.Engine.Kubernetes.Registry = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Kubernetes.Registry) }},

	{"engine.kubernetes.runtime_class", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" && !dnsSubdomainRE.MatchString(s) {
			return fmt.Errorf("%q is not a RuntimeClass name (lower-case letters, digits, - and .)", s)
		}
		c.Engine.Kubernetes.RuntimeClass = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Kubernetes.RuntimeClass) }},

	{"engine.kubernetes.storage_class", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" && !dnsSubdomainRE.MatchString(s) {
			return fmt.Errorf("%q is not a StorageClass name (lower-case letters, digits, - and .)", s)
		}
		c.Engine.Kubernetes.StorageClass = s
		return nil
	}, func(c *Config) string { return quote(c.Engine.Kubernetes.StorageClass) }},

	{"engine.kubernetes.warm", kindInt, func(c *Config, v any, _ string) error {
		n := v.(int64)
		if n < 0 || n > 100 {
			return fmt.Errorf("%d is out of range: keep 0 to 100 pods warm", n)
		}
		c.Engine.Kubernetes.Warm = int(n)
		return nil
	}, func(c *Config) string { return strconv.Itoa(c.Engine.Kubernetes.Warm) }},

	{"image.base", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s == "" {
			return fmt.Errorf("is empty; give an image such as %q, or %q", DefaultBase, BootstrapBase)
		}
		if err := noSpaces(s); err != nil {
			return err
		}
		c.Image.Base = s
		return nil
	}, func(c *Config) string { return quote(c.Image.Base) }},

	{"image.ca_certificates", kindList, func(c *Config, v any, dir string) error {
		out, err := caPaths(v.([]string), dir)
		if err != nil {
			return err
		}
		c.Image.CACertificates = out
		return nil
	}, func(c *Config) string { return quoteList(c.Image.CACertificates) }},

	{"github.api_url", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" {
			if _, err := forge.ParseAPIURL(s); err != nil {
				return err
			}
		}
		c.GitHub.APIURL = s
		return nil
	}, func(c *Config) string { return quote(c.GitHub.APIURL) }},

	{"image.name", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if err := noSpaces(s); err != nil {
			return err
		}
		c.Image.Name = s
		return nil
	}, func(c *Config) string { return quote(c.Image.Name) }},

	{"notify.desktop", kindBool, func(c *Config, v any, _ string) error {
		c.Notify.Desktop = v.(bool)
		return nil
	}, func(c *Config) string { return strconv.FormatBool(c.Notify.Desktop) }},

	{"notify.webhook", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" {
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("is not an http(s) URL; write it like https://hooks.example.com/airlock")
			}
		}
		c.Notify.Webhook = s
		return nil
	}, func(c *Config) string { return quote(c.Notify.Webhook) }},

	{"run.detach", kindBool, func(c *Config, v any, _ string) error {
		c.Run.Detach = v.(bool)
		return nil
	}, func(c *Config) string { return strconv.FormatBool(c.Run.Detach) }},

	{"run.max_cost", kindFloat, func(c *Config, v any, _ string) error {
		f := v.(float64)
		if !(f >= 0) || math.IsInf(f, 0) {
			return fmt.Errorf("must be 0 (no limit) or a cost in USD such as 2.50, got %v", f)
		}
		c.Run.MaxCostUSD = f
		return nil
	}, func(c *Config) string { return strconv.FormatFloat(c.Run.MaxCostUSD, 'f', -1, 64) }},

	{"run.timeout", kindString, func(c *Config, v any, _ string) error {
		d, err := ParseTimeout(v.(string))
		if err != nil {
			return err
		}
		c.Run.Timeout = d
		return nil
	}, func(c *Config) string { return quote(FormatTimeout(c.Run.Timeout)) }},

	{"sandbox.caches", kindList, func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			if !slices.Contains(CacheNames(), e) {
				return fmt.Errorf("unknown cache %q; caches: %s", e, strings.Join(CacheNames(), ", "))
			}
		}
		c.Sandbox.Caches = appendNew(nil, v.([]string))
		return nil
	}, func(c *Config) string { return quoteList(c.Sandbox.Caches) }},

	{"sandbox.cpus", kindFloat, func(c *Config, v any, _ string) error {
		f := v.(float64)
		if !(f > 0) || math.IsInf(f, 0) {
			return fmt.Errorf("must be a number of CPUs greater than 0, such as 2 or 0.5, got %v", f)
		}
		c.Sandbox.CPUs = f
		return nil
	}, func(c *Config) string { return strconv.FormatFloat(c.Sandbox.CPUs, 'f', -1, 64) }},

	{"sandbox.env", kindList, func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			if err := prompt.ValidateEnvEntry(e); err != nil {
				return err
			}
		}
		c.Sandbox.Env = mergeEnv(c.Sandbox.Env, v.([]string))
		return nil
	}, nil}, // shown per entry by Sources

	{"sandbox.env_file", kindString, func(c *Config, v any, dir string) error {
		s := v.(string)
		if strings.HasPrefix(s, "~") {
			return fmt.Errorf("%q: ~ is not expanded; use an absolute path or one relative to this file", s)
		}
		if s != "" {
			var err error
			if s, err = resolvePath(dir, s); err != nil {
				return err
			}
		}
		c.Sandbox.EnvFile = s
		return nil
	}, func(c *Config) string { return quote(c.Sandbox.EnvFile) }},

	{"sandbox.memory", kindString, func(c *Config, v any, _ string) error {
		n, err := ParseSize(v.(string))
		if err != nil {
			return err
		}
		if n < minMemory {
			return fmt.Errorf("%q is too small; Docker needs at least 6m", v)
		}
		c.Sandbox.MemoryBytes = n
		return nil
	}, func(c *Config) string { return quote(FormatSize(c.Sandbox.MemoryBytes)) }},

	{"sandbox.disk", kindString, func(c *Config, v any, _ string) error {
		n, err := ParseSize(v.(string))
		if err != nil {
			return err
		}
		if n < minDisk {
			return fmt.Errorf("%q is too small; a run needs at least 16m", v)
		}
		c.Sandbox.DiskBytes = n
		return nil
	}, func(c *Config) string { return quote(FormatSize(c.Sandbox.DiskBytes)) }},

	{"sandbox.mounts", kindList, func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			if _, err := ParseMount(e, os.UserHomeDir); err != nil {
				return err
			}
		}
		c.Sandbox.Mounts = appendNew(c.Sandbox.Mounts, v.([]string))
		return nil
	}, nil},

	{"sandbox.pids", kindInt, func(c *Config, v any, _ string) error {
		n := v.(int64)
		if n <= 0 {
			return fmt.Errorf("must be a number of processes greater than 0, got %d", n)
		}
		c.Sandbox.Pids = n
		return nil
	}, func(c *Config) string { return strconv.FormatInt(c.Sandbox.Pids, 10) }},

	{"sandbox.runtime", kindString, func(c *Config, v any, _ string) error {
		s := v.(string)
		if s != "" && !runtimeRE.MatchString(s) {
			return fmt.Errorf("%q is not a runtime name; write one the engine has registered, such as \"runsc\" (\"\" for the engine's default)", s)
		}
		c.Sandbox.Runtime = s
		return nil
	}, func(c *Config) string { return quote(c.Sandbox.Runtime) }},

	{"sandbox.setup", kindList, func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			if err := checkSetupCommand(e); err != nil {
				return err
			}
		}
		c.Sandbox.Setup = append(append([]string{}, c.Sandbox.Setup...), v.([]string)...)
		return nil
	}, nil},
})

// caPaths resolves a list of CA certificate files: "host" is the host's
// bundle, relative paths are against dir.
func caPaths(in []string, dir string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, p := range in {
		switch {
		case p == "host":
			p = HostCABundle
		case p == "":
			return nil, fmt.Errorf("contains an empty path")
		case strings.HasPrefix(p, "~"):
			return nil, fmt.Errorf("%q: ~ is not expanded; use an absolute path or one relative to this file", p)
		default:
			var err error
			if p, err = resolvePath(dir, p); err != nil {
				return nil, err
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// runtimeRE is what an OCI runtime's name may look like (Docker's runtime
// names; the engine decides which exist).
var runtimeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// tables are the TOML tables the schema has, for telling a misplaced table
// from an unknown key.
var tables = func() []string {
	t := []string{"agent", "egress", "egress.inject", "egress.ssh", "engine", "engine.incus", "engine.kubernetes", "github", "image", "notify", "profiles", "run", "sandbox"}
	for _, a := range agent.All() {
		t = append(t, "agent."+a.Name())
	}
	sort.Strings(t)
	return t
}()

// incusNameRE is what a network or storage pool name may be.
var incusNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{0,62}$`)

// Kubernetes' names: a DNS label (namespaces), a DNS subdomain (classes),
// and a label's key (an optional DNS-subdomain prefix and a name) and value.
var (
	dnsLabelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	labelKeyRE     = regexp.MustCompile(`^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelValueRE   = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
)

// accumulating settings add entries across layers instead of replacing the
// list; Sources shows them one row per entry.
var accumulating = map[string]bool{
	"sandbox.env": true, "egress.allow": true, "egress.deny": true,
	"egress.allow_cidrs": true, "egress.extra_hosts": true, "egress.ca_certificates": true,
	"egress.scan_block": true, "egress.scan_log": true, "egress.scan_off": true,
	"sandbox.mounts": true, "sandbox.setup": true,
}

// scanHosts is the apply function of a per-host scan mode list: host
// patterns as in egress.allow, without a port.
func scanHosts(list func(c *Config) *[]string) func(c *Config, v any, _ string) error {
	return func(c *Config, v any, _ string) error {
		for _, e := range v.([]string) {
			if _, err := egress.ParseScanHost(e); err != nil {
				return err
			}
		}
		l := list(c)
		*l = appendNew(*l, v.([]string))
		return nil
	}
}

// appendNew appends the entries not already in list.
func appendNew(list, entries []string) []string {
	out := append([]string{}, list...)
	for _, e := range entries {
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

const (
	minMemory = 6 << 20
	minDisk   = 16 << 20
)

// versionRE accepts npm versions only: the value ends up in an image build.
var versionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

func lookupSetting(key string) (setting, bool) {
	for _, s := range settings {
		if s.key == key {
			return s, true
		}
	}
	return setting{}, false
}

func isTable(key string) bool {
	for _, t := range tables {
		if t == key {
			return true
		}
	}
	return false
}

// childKeys lists the names directly under table ("" for the top level).
func childKeys(table string) []string {
	var out []string
	seen := map[string]bool{}
	prefix := table + "."
	if table == "" {
		prefix = ""
	}
	all := append(append([]string{}, tables...), keysOf(settings)...)
	for _, k := range all {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok || rest == "" {
			continue
		}
		rest, _, _ = strings.Cut(rest, ".")
		if !seen[rest] {
			seen[rest] = true
			out = append(out, rest)
		}
	}
	sort.Strings(out) // tables (an agent's) and keys alike, in one order
	return out
}

func keysOf(ss []setting) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.key
	}
	return out
}

func noSpaces(s string) error {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%q must not contain spaces or control characters", s)
	}
	return nil
}

// sshPath resolves a path in [egress.ssh]: ~/ is the user's home, where
// SSH keeps its files; relative paths are relative to the file.
func sshPath(dir, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%q: %w", p, err)
		}
		return filepath.Join(home, rest), nil
	}
	if strings.HasPrefix(p, "~") {
		return "", fmt.Errorf("%q: only ~/ is expanded; use an absolute path or one relative to this file", p)
	}
	return resolvePath(dir, p)
}

func resolvePath(dir, p string) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	abs, err := filepath.Abs(filepath.Join(dir, p))
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", p, err)
	}
	return abs, nil
}

// mergeEnv adds entries to env; an entry for a NAME already present replaces
// it in place.
func mergeEnv(env, entries []string) []string {
	out := append([]string{}, env...)
	for _, e := range entries {
		name, _, _ := strings.Cut(e, "=")
		i := envIndex(out, name)
		if i < 0 {
			out = append(out, e)
		} else {
			out[i] = e
		}
	}
	return out
}

func envIndex(env []string, name string) int {
	for i, e := range env {
		if n, _, _ := strings.Cut(e, "="); n == name {
			return i
		}
	}
	return -1
}

func envName(entry string) string {
	name, _, _ := strings.Cut(entry, "=")
	return name
}

func quote(s string) string { return strconv.Quote(s) }

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// withAgentSettings adds each agent's own keys (agent.NAME.version and
// agent.NAME.base_url) to base and sorts the schema by key.
func withAgentSettings(base []setting) []setting {
	out := append([]setting(nil), base...)
	for _, a := range agent.All() {
		name, title, def := a.Name(), a.Title(), a.DefaultVersion()
		out = append(out,
			setting{"agent." + name + ".base_url", kindString, func(c *Config, v any, _ string) error {
				s := v.(string)
				if s != "" {
					u, err := url.Parse(s)
					if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
						return fmt.Errorf("%q is not an http(s) URL; write it like https://gateway.example.com", s)
					}
				}
				cli := c.Agent.CLI[name]
				cli.BaseURL = s
				c.Agent.CLI[name] = cli
				return nil
			}, func(c *Config) string { return quote(c.Agent.CLI[name].BaseURL) }},
			setting{"agent." + name + ".version", kindString, func(c *Config, v any, _ string) error {
				s := v.(string)
				if s != "latest" && !versionRE.MatchString(s) {
					return fmt.Errorf("%q is not a %s version; use one such as %q, or \"latest\"", s, title, def)
				}
				cli := c.Agent.CLI[name]
				cli.Version = s
				c.Agent.CLI[name] = cli
				return nil
			}, func(c *Config) string { return quote(c.Agent.CLI[name].Version) }},
		)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// checkRegistry accepts HOST[:PORT][/PATH] that images can be named in:
// the host first (with a dot or a port, or localhost: without one, Docker
// would read the first element as a Docker Hub user), then lower-case path
// elements, as in "registry.example.com/team" or "localhost:5000".
func checkRegistry(s string) error {
	if s == "" {
		return nil
	}
	host, _, _ := strings.Cut(s, "/")
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return fmt.Errorf("%q does not start with a registry host: name one with a dot or a port, such as \"registry.example.com/team\" or \"localhost:5000\" (Docker Hub: \"docker.io/USER\")", s)
	}
	named, err := reference.ParseNamed(s + "/airlock-claude")
	if err != nil || reference.Domain(named) != host {
		why := "not HOST[:PORT][/PATH]"
		if err != nil {
			why = err.Error()
		}
		return fmt.Errorf("%q is not a registry to push images to (HOST[:PORT][/PATH], the path in lower case): %s", s, why)
	}
	return nil
}
