// Package config resolves airlock's settings from layered TOML files, prompt
// frontmatter and flags, remembering where every value came from.
//
// Layers, lowest first: built-in defaults, the system file
// (/etc/airlock/config.toml), the user file
// ($XDG_CONFIG_HOME/airlock/config.toml), the project file
// (<repo>/.airlock/config.toml), the prompt's frontmatter, then flags. A
// higher layer replaces a value set by a lower one, except sandbox.env, whose
// entries accumulate across layers (a later entry for the same NAME wins).
package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
)

// Config is the resolved configuration. The TOML key of each field is given
// in its comment.
type Config struct {
	Agent   Agent
	Image   Image
	Sandbox Sandbox
	Run     Run
	Egress  Egress
	Notify  Notify
	Engine  Engine
	GitHub  GitHub
}

// GitHub is where `airlock pr` opens pull requests ([github]).
type GitHub struct {
	// APIURL is the GitHub REST API (github.api_url): https, or http to a
	// loopback address. Default "": https://api.github.com; GitHub
	// Enterprise Server is https://HOST/api/v3. Your user config only:
	// your GitHub token is sent to it.
	APIURL string
}

// Engine chooses the container engine ([engine]).
type Engine struct {
	// Kind is "docker", "podman", "incus" or "kubernetes" (engine.kind); --engine
	// overrides it. Default "": detect one (DOCKER_HOST, then the Docker
	// socket, then Podman's sockets, then Incus').
	Kind string
	// Incus holds the settings of the Incus engine ([engine.incus]).
	Incus EngineIncus
	// Kubernetes holds the settings of the Kubernetes engine
	// ([engine.kubernetes]).
	Kubernetes EngineKubernetes
}

// EngineKubernetes are the Kubernetes engine's settings
// ([engine.kubernetes]); see docs/kubernetes.md.
type EngineKubernetes struct {
	// Kubeconfig is the kubeconfig file (engine.kubernetes.kubeconfig).
	// Default "": $KUBECONFIG, else ~/.kube/config. Your user config only.
	Kubeconfig string
	// Context is the kubeconfig context (engine.kubernetes.context).
	// Default "": the current context. Your user config only.
	Context string
	// Namespace is where the pods go (engine.kubernetes.namespace).
	// Default "": the context's namespace, else "default". Your user
	// config only.
	Namespace string
	// RuntimeClass is the RuntimeClass of every pod
	// (engine.kubernetes.runtime_class), such as gVisor's. Default "":
	// the cluster's default runtime, or the one [sandbox] runtime names.
	RuntimeClass string
	// NodeSelector are "label=value" pairs a node must carry
	// (engine.kubernetes.node_selector). Default: none.
	NodeSelector []string
	// StorageClass is the class of persistent runs' volume claims
	// (engine.kubernetes.storage_class). Default "": the cluster's default.
	StorageClass string
	// Registry is where `airlock image build` pushes images and pods pull
	// them from (engine.kubernetes.registry). Default "": the images are
	// loaded into the nodes by hand and airlock checks they are there.
	// Your user config only.
	Registry string
	// Warm is how many sandboxes (pairs of pods) to keep made and waiting
	// for runs of each shape (engine.kubernetes.warm). Default 0.
	Warm int
	// ClusterCIDRs are the cluster's pod and service ranges, which the
	// proxy's network policy keeps it from (engine.kubernetes.cluster_cidrs).
	// Default: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 and 100.64.0.0/10
	// (every private range clusters commonly use).
	ClusterCIDRs []string
}

// EngineIncus are the Incus engine's settings ([engine.incus]).
type EngineIncus struct {
	// Pool is the storage pool of the instances' root disks
	// (engine.incus.pool). Default "": "airlock" (a btrfs pool, where an
	// instance takes milliseconds; on a dir pool each takes seconds).
	Pool string
	// Network is the managed bridge the egress proxies join
	// (engine.incus.network). Default "": "airlockbr0".
	Network string
	// Nesting lets the agent run containers itself, Docker in the sandbox
	// (engine.incus.nesting, Incus' security.nesting). Default false.
	// Refused on other engines.
	Nesting bool
}

// Agent selects and tunes the coding agent ([agent]).
type Agent struct {
	// Name is the agent to run (agent.name): claude, codex, gemini or
	// opencode (agent.Names). Default "claude".
	Name string
	// Model is passed to the agent as --model when set (agent.model).
	// Default "": the agent's own default model.
	Model string
	// MaxTurns ends the agent's session after this many turns
	// (agent.max_turns). Default 0: no limit.
	MaxTurns int
	// CLI holds each agent's own settings ([agent.claude], [agent.codex],
	// ...), by agent name; every agent has an entry.
	CLI map[string]CLI
}

// CLI holds one agent's settings ([agent.NAME]).
type CLI struct {
	// Version is the agent's release baked into its default image
	// (agent.NAME.version): a version such as "2.1.330", or "latest".
	// Default: the release airlock pins (agent.Agent.DefaultVersion).
	Version string
	// BaseURL is the model API or gateway the agent's traffic goes to
	// (agent.NAME.base_url), an http or https URL. Default "": the host
	// environment's variable for it (ANTHROPIC_BASE_URL for Claude Code)
	// if set, else the provider's API.
	BaseURL string
}

// Selected is the settings of the agent that runs.
func (a Agent) Selected() CLI { return a.CLI[a.Name] }

// Image chooses the container image ([image]).
type Image struct {
	// Name is an image to run instead of airlock's default one (image.name).
	// It must already exist locally. Default "".
	Name string
	// Base is the FROM image for airlock's default image (image.base), or
	// "bootstrap" to build the base with debootstrap, for machines that
	// cannot pull from a registry. Default "debian:bookworm-slim".
	Base string
	// CACertificates lists PEM files to trust while building the image and
	// inside the sandbox (image.ca_certificates). The entry "host" means
	// the host's bundle, /etc/ssl/certs/ca-certificates.crt. Relative paths
	// are relative to the directory of the config file that set them; the
	// paths here are already resolved. Default ["host"]: networks that re-sign
	// TLS need it, and a missing host bundle is skipped when not set explicitly.
	CACertificates []string
}

// Sandbox limits and equips the agent's container ([sandbox]).
type Sandbox struct {
	// MemoryBytes caps the container's memory (sandbox.memory), written as a
	// docker-style size such as "512m" or "4g" (at least "6m"). Default "4g".
	MemoryBytes int64
	// CPUs caps the number of CPUs the container may use (sandbox.cpus),
	// fractions allowed; must be > 0. Default 2.0.
	CPUs float64
	// Pids caps the number of processes in the container (sandbox.pids);
	// must be > 0. Default 4096.
	Pids int64
	// Env lists environment variables for the agent (sandbox.env): NAME
	// takes the value from the host environment when the run starts,
	// NAME=value sets it. Entries from all layers accumulate; for a
	// repeated NAME the highest layer wins. Default [].
	Env []string
	// EnvFile is a dotenv file (KEY=VALUE lines) whose variables are given
	// to the agent (sandbox.env_file). A relative path is relative to the
	// directory of the config file that set it; the path here is already
	// resolved. Default "": none.
	EnvFile string
	// Caches lists shared dependency caches the agent gets, kept across the
	// project's runs (sandbox.caches): "npm", "go", "pip". Default [].
	Caches []string
	// DiskBytes is the run's disk quota (sandbox.disk): its workspace,
	// home and log directories together may not grow past it; the host
	// stops a run that does. A size such as "10g", at least "16m".
	// Default "10g".
	DiskBytes int64
	// Runtime is the OCI runtime the agent's container runs under
	// (sandbox.runtime), such as "runsc" for gVisor; it must be one the
	// engine has registered. Default "": the engine's default (runc).
	Runtime string
	// Mounts are host directories or files the agent gets
	// (sandbox.mounts), each "SOURCE:TARGET", read-only, or
	// "SOURCE:TARGET:rw" to let the agent write there. SOURCE is absolute
	// or starts with ~/ (your home); TARGET is absolute. Stored as written
	// (ParseMount reads them). A repository's own config may
	// not set it; the run refuses, before anything is made, a SOURCE that
	// is or holds the repository, its .git, the container engine, /, your
	// home, airlock's credentials or state (ParseMount and run.CheckMounts).
	// Entries add up across layers. Default [].
	Mounts []string
	// Setup lists shell commands run in the sandbox before the agent, as
	// the agent's user in /workspace and behind the same egress proxy
	// (sandbox.setup); the prompt's setup: entries run after them. A
	// failing command fails the run, and the agent does not start.
	// Default [].
	Setup []string
}

// CacheNames are the caches sandbox.caches may list.
func CacheNames() []string { return []string{"go", "npm", "pip"} }

// ParseTimeout reads a run.timeout value: a Go duration such as "45m" or
// "1h30m"; "" and "0" mean no limit.
func ParseTimeout(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration; write it like \"45m\" or \"1h30m\" (\"\" for no limit)", s)
	}
	return d, nil
}

// FormatTimeout writes a timeout the way ParseTimeout reads it.
func FormatTimeout(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// Egress is the run's network policy, enforced by its egress proxy
// ([egress]). allow, deny and allow_cidrs add up across layers (defaults,
// files, prompt, flags); deny beats allow.
type Egress struct {
	// Mode is "allowlist" (only allowed hosts), "restricted" (any public
	// address, nothing private) or "open" (anything, still logged)
	// (egress.mode). Default "allowlist".
	Mode string
	// Allow lists host patterns: "host", "*.example.com" (the apex and every
	// subdomain), optionally ":port" (default ports 443 and 80)
	// (egress.allow). The agent's own needs are added by airlock.
	Allow []string
	// Deny lists host patterns refused in every mode (egress.deny).
	Deny []string
	// AllowCIDRs lists address ranges exempt from the proxy's private,
	// loopback and link-local address filter (egress.allow_cidrs). They
	// allow no destination by themselves: a name or IP still needs an
	// allow rule.
	AllowCIDRs []string
	// AllowWideCIDRs confirms allow_cidrs ranges wider than /16 (IPv4) or
	// /48 (IPv6), or covering a cloud metadata address, which are refused
	// otherwise (egress.allow_wide_cidrs). Default false.
	AllowWideCIDRs bool
	// Network is the engine network the proxy sits on; empty means airlock's
	// own bridge network "airlock-egress" (egress.network).
	Network string
	// ExtraHosts pins names to addresses in the proxy, "name:address" like
	// docker --add-host (egress.extra_hosts).
	ExtraHosts []string
	// Confirm shows the resolved policy and asks y/N before a run when
	// standard input is a terminal (egress.confirm). Default true.
	Confirm bool
	// GitAuth is a git host (such as "github.com") the agent may fetch
	// from and push to over HTTPS, with your token (GH_TOKEN, GITHUB_TOKEN
	// or `gh auth token`) injected by the proxy (egress.git_auth). Default
	// "": none.
	GitAuth string
	// Inject are credentials the proxy adds to requests for a host
	// ([[egress.inject]]); entries add up across layers.
	Inject []Inject
	// CACertificates are PEM files the proxy trusts, on top of
	// image.ca_certificates, when it connects to a host over TLS itself
	// (intercepted hosts, the model API) (egress.ca_certificates).
	CACertificates []string
	// Scan is what the proxy does with a secret-scan hit: "block", "log"
	// or "off" (egress.scan). Default "block".
	Scan string
	// ScanBlock, ScanLog and ScanOff override Scan for the hosts matching
	// their patterns (egress.scan_block, scan_log, scan_off); the most
	// specific pattern wins.
	ScanBlock, ScanLog, ScanOff []string
	// ScanBodyKiB is how many KiB of a plain-HTTP request body are scanned;
	// 0 scans none (egress.scan_body_kib). Default 256.
	ScanBodyKiB int
	// SSH is SSH through the proxy ([egress.ssh]).
	SSH SSH
}

// SSH configures SSH to the hosts allowed on port 22 ([egress.ssh]): the
// sandbox's ssh-agent, filtered in the proxy, and the host keys it trusts.
type SSH struct {
	// Keys are the only keys the sandbox's ssh-agent lists and signs
	// with: public key files or SHA256 fingerprints (egress.ssh.keys).
	// Default none: no agent.
	Keys []string
	// KeyFile is an unencrypted private key loaded into a per-run agent
	// in the proxy instead of using the user's ssh-agent
	// (egress.ssh.key_file).
	KeyFile string
	// KnownHosts are the known_hosts files whose entries for the allowed
	// SSH hosts the sandbox trusts (egress.ssh.known_hosts). Default
	// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.
	KnownHosts []string
	// Hosts are the host patterns the sandbox may sign in to with Keys
	// or KeyFile (egress.ssh.hosts): every host allowed on port 22 must
	// be one of them. The user's to set, since the allowlist may come
	// from the repository.
	Hosts []string
}

// Run controls how `airlock run` behaves ([run]).
type Run struct {
	// Detach starts the run in the background and returns at once
	// (run.detach). Default false.
	Detach bool
	// MaxCostUSD stops a run once its estimated cost reaches this many USD
	// (run.max_cost); see docs/budgets.md for how cost is estimated.
	// Default 0: no limit.
	MaxCostUSD float64
	// Timeout stops a run after this long (run.timeout), a duration such as
	// "45m" or "2h". Default "": no limit.
	Timeout time.Duration
}

// Notify says where airlock sends word when a run ends or its agent waits
// for input ([notify]).
type Notify struct {
	// Desktop shows a desktop notification with notify-send, when it is
	// installed (notify.desktop). Default false.
	Desktop bool
	// Webhook is an http(s) URL that gets a JSON POST per notification
	// (notify.webhook). Default "": none.
	Webhook string
}

// Default values, named because the template and docs repeat them.
const (
	DefaultAgent         = agent.Default
	DefaultClaudeVersion = agent.ClaudeVersion
	DefaultBase          = "debian:bookworm-slim"
	DefaultMemory        = "4g"
	DefaultCPUs          = 2.0
	DefaultPids          = 4096
	DefaultDiskBytes     = 10 << 30
	// HostCABundle is what the ca_certificates entry "host" stands for.
	HostCABundle = "/etc/ssl/certs/ca-certificates.crt"
	// BootstrapBase is the image.base value that builds the base image with
	// debootstrap instead of pulling one.
	BootstrapBase = "bootstrap"
)

// Defaults returns the built-in configuration, the lowest layer.
func Defaults() Config {
	mem, err := ParseSize(DefaultMemory)
	if err != nil {
		panic(err) // a constant; covered by tests
	}
	return Config{
		Agent: Agent{Name: DefaultAgent, CLI: defaultCLIs()},
		Image: Image{Base: DefaultBase, CACertificates: []string{HostCABundle}},
		Egress: Egress{Mode: "allowlist", Confirm: true, Allow: []string{}, Deny: []string{}, AllowCIDRs: []string{}, ExtraHosts: []string{}, CACertificates: []string{},
			Scan: "block", ScanBlock: []string{}, ScanLog: []string{}, ScanOff: []string{}, ScanBodyKiB: 256},
		Sandbox: Sandbox{MemoryBytes: mem, CPUs: DefaultCPUs, Pids: DefaultPids, DiskBytes: DefaultDiskBytes, Env: []string{}, Caches: []string{}, Mounts: []string{}, Setup: []string{}},
	}
}

func defaultCLIs() map[string]CLI {
	m := map[string]CLI{}
	for _, a := range agent.All() {
		m[a.Name()] = CLI{Version: a.DefaultVersion()}
	}
	return m
}
