package config

import (
	"fmt"
	"strings"

	"github.com/airlock-dev/airlock/internal/agent"
)

// ProjectTemplate is the .airlock/config.toml that `airlock init` writes:
// every setting, commented out, at its default. Settings here override the
// system and user files; prompt frontmatter and flags override them.
func ProjectTemplate() string {
	var agents strings.Builder
	for _, a := range agent.All() {
		fmt.Fprintf(&agents, `[agent.%s]
# %s release baked into its image, or "latest".
# version = %q
# Model gateway URL; empty uses the agent's own variable from your
# environment, else the provider's API.
# Your user config only: a repository's config may not set it.
# base_url = ""

`, a.Name(), a.Title(), a.DefaultVersion())
	}
	return strings.Replace(projectTemplate, "{{agents}}", agents.String(), 1)
}

const projectTemplate = `# airlock project configuration.
# Layers, lowest first: built-in defaults, /etc/airlock/config.toml,
# ~/.config/airlock/config.toml, this file, the prompt's frontmatter, flags.
# See every value and where it came from with: airlock config show
# Uncomment a line to change it. Relative paths are relative to this file.

[agent]
# The coding agent: claude (Claude Code), codex (Codex CLI), gemini (Gemini
# CLI) or opencode.
# name = "claude"
# Model passed to the agent as --model; empty uses the agent's default.
# model = ""
# Stop the agent after this many turns; 0 means no limit.
# max_turns = 0

{{agents}}[egress]
# What the agent may reach, enforced by the run's own egress proxy.
# "allowlist": only the hosts below (plus what the agent itself needs);
# "restricted": any public address, nothing private; "open": anything
# (still logged).
# mode = "allowlist"
# Host patterns: "host", "*.example.com" (example.com and every subdomain),
# optionally with ":port" (default ports 443 and 80). Entries add up across
# layers; deny beats allow.
# allow = []
# deny = []
# Private, loopback or link-local ranges an allowed name (or an allowed IP)
# may still resolve to; they allow nothing by themselves.
# allow_cidrs = []
# Confirm allow_cidrs ranges wider than /16 (IPv4) or /48 (IPv6), or
# covering the cloud metadata address 169.254.169.254.
# allow_wide_cidrs = false
# Engine network for the proxy; empty uses airlock's own "airlock-egress".
# network = ""
# Pin names to addresses in the proxy, like docker --add-host.
# extra_hosts = []
# Show the resolved policy and ask y/N before each run on a terminal.
# confirm = true
# A git host the agent may fetch from and push to over HTTPS with your token
# (GH_TOKEN, GITHUB_TOKEN or ` + "`gh auth token`" + `), injected by the proxy. Your user config only.
# git_auth = ""
# PEM files the proxy also trusts when it speaks TLS itself (hosts with an
# injected credential, the model API), on top of [image] ca_certificates.
# Your user config only.
# ca_certificates = []
# Credentials the proxy adds to requests for a host, so the sandbox never
# holds them (docs/egress.md). One table per credential, for example:
#   [[egress.inject]]
#   host = "npm.example.com"
#   header = "Authorization: Bearer {}"   # or basic = "user:{}", query = "token"
#   from = "env:NPM_TOKEN"                # or file:PATH, cmd:COMMAND (user config only)
#   placeholder_env = "NPM_TOKEN"         # the sandbox gets a placeholder in it
# Secret scanning of what the agent sends (plain HTTP and host names):
# "block" refuses a request carrying a credential, "log" lets it through
# and notes the rule in the audit log, "off" skips it. The secrets airlock
# holds are refused in every mode.
# scan = "block"
# Host patterns (as in allow, no port) whose mode differs; the most
# specific pattern wins.
# scan_block = []
# scan_log = []
# scan_off = []
# KiB of each plain-HTTP request body scanned; 0 scans no body.
# scan_body_kib = 256

[egress.ssh]
# SSH to the hosts allowed on port 22 ("github.com:22"): the sandbox's
# ssh-agent lists and signs with only these keys (public key files or
# SHA256 fingerprints), from your ssh-agent; the private keys stay out.
# keys = []
# An unencrypted private key loaded into the run's own agent in the
# proxy, instead of your ssh-agent.
# key_file = ""
# Where the allowed hosts' keys come from; empty: ~/.ssh/known_hosts and
# /etc/ssh/ssh_known_hosts.
# known_hosts = []
# With keys or key_file: the hosts the sandbox may sign in to (every host
# allowed on port 22 must be one of them). Your user config only.
# hosts = []

[engine]
# The container engine: "docker", "podman", "incus" or "kubernetes"; empty
# detects one (DOCKER_HOST, the Docker socket, Podman's sockets, then Incus').
# kind = ""

[engine.incus]
# The storage pool of the instances' root disks; empty: "airlock" (btrfs:
# an instance in milliseconds; dir: seconds each).
# pool = ""
# The managed bridge the egress proxies join; empty: "airlockbr0".
# network = ""
# Let the agent run containers itself (Docker in the sandbox): Incus'
# security.nesting. Only on Incus.
# nesting = false

[engine.kubernetes]
# See docs/kubernetes.md. The cluster: kubeconfig file (empty: $KUBECONFIG,
# else ~/.kube/config), its context (empty: the current one) and the
# namespace (empty: the context's, else "default"). Your user config only.
# kubeconfig = ""
# context = ""
# namespace = ""
# The pods' RuntimeClass, such as gVisor's; empty: the cluster's default.
# runtime_class = ""
# Node labels a run's pods must land on, as "label=value".
# node_selector = []
# The StorageClass of persistent runs' volumes; empty: the cluster's default.
# storage_class = ""
# Where "airlock image build" pushes images and pods pull them from,
# HOST[:PORT][/PATH] such as "registry.example.com/team"; empty: load the
# image into the nodes yourself. Your user config only.
# registry = ""
# Sandboxes (pairs of pods) kept made and waiting for runs like the last
# one, so that a run starts at once; "airlock clean" removes them.
# warm = 0
# The cluster's pod and service ranges, which the proxy may not reach;
# empty: every private range.
# cluster_cidrs = []

[image]
# Run this image instead of airlock's default one.
# name = ""
# FROM image for the default image, or "bootstrap" to build one with
# debootstrap when no registry is reachable.
# base = "debian:bookworm-slim"
# PEM files to trust at build and run time; "host" means the host's bundle
# (/etc/ssl/certs/ca-certificates.crt).
# ca_certificates = ["host"]

[sandbox]
# Memory limit, docker-style: 512m, 4g.
# memory = "4g"
# CPU limit; fractions allowed.
# cpus = 2.0
# Process limit.
# pids = 4096
# Disk quota for the run's workspace, home and log directories together;
# the host stops a run that grows past it.
# disk = "10g"
# Environment for the agent: NAME copies it from your environment (not in a
# repository's config), NAME=value sets it. Entries add to those from other layers.
# env = []
# dotenv file (KEY=VALUE lines) with more variables for the agent. Your user
# config only.
# env_file = ""
# Shared dependency caches kept across this project's runs: "npm", "go",
# "pip".
# caches = []
# OCI runtime for the agent's container, such as "runsc" (gVisor); "" is the
# engine's default. The egress proxy always runs under the default.
# runtime = ""
# Shell commands run in the sandbox before the agent, as its user in
# /workspace, behind the egress proxy; the prompt's setup: ones run after
# them. One that fails fails the run (airlock logs --setup RUN).
# setup = []
# Host paths for the agent, "SOURCE:TARGET" read-only or "SOURCE:TARGET:rw",
# such as "~/datasets:/data". Your user config only.
# mounts = []

[run]
# Start runs in the background.
# detach = false
# Stop a run once its estimated cost reaches this many USD; 0 means no limit.
# max_cost = 0.0
# Stop a run after this long, such as "45m"; "" means no limit.
# timeout = ""

[notify]
# When a run ends or its agent waits for input: a desktop notification
# (notify-send, if installed) ...
# desktop = false
# ... and a JSON POST to this URL: run, name, project, status, cost_usd,
# turns, reason, event.
# webhook = ""

[github]
# The GitHub REST API airlock pr opens pull requests with, your token in
# hand: "" is https://api.github.com; GitHub Enterprise Server is
# "https://HOST/api/v3". Your user config only.
# api_url = ""
`
