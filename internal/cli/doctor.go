package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/credentials"
	"github.com/airlock-dev/airlock/internal/provider"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

func newDoctorCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check the engine, git, image, configuration and credentials",
		Long: `Check everything a run needs and say how to fix what is wrong.

FAIL marks what keeps runs from starting now; exit status 1 if any check
fails. NOTE marks what only some other action needs (debootstrap, for
example, is needed to rebuild a bootstrap image, not to run one that exists).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return doctorRun(cmd.Context(), f)
		},
	}
}

type check struct {
	name string
	ok   bool
	// note: not ok, but nothing a run needs now; reported, never a failure.
	note bool
	info string // what was found, or what is wrong
	fix  string
}

func doctorRun(ctx context.Context, f *Factory) error {
	var checks []check
	add := func(c check) { checks = append(checks, c) }

	if out, err := exec.CommandContext(ctx, "git", "--version").Output(); err != nil {
		add(check{name: "git", info: "not found", fix: "install git (apt-get install git)"})
	} else {
		add(check{name: "git", ok: true, info: strings.TrimSpace(string(out))})
	}

	project, perr := f.project(ctx)
	if perr != nil {
		add(check{name: "project", info: perr.Error(), fix: "run airlock inside a git repository"})
	} else {
		add(check{name: "project", ok: true, info: project})
	}

	res, err := f.loadConfig(project)
	var cfg config.Config
	if err != nil {
		add(check{name: "configuration", info: err.Error(), fix: "correct the file and line named above (`airlock config show` once it parses)"})
	} else {
		cfg = res.Config
		add(check{name: "configuration", ok: true, info: "valid"})
	}

	imageBuilt := false
	for _, c := range engineChecks(ctx, f.Getenv) {
		add(c)
	}
	eng, err := f.PingedEngine(ctx)
	if err != nil {
		add(check{name: "container engine", info: err.Error(), fix: "start Docker (`sudo systemctl start docker`, or `sudo dockerd &`), choose another engine with --engine or [engine] kind, or run `make setup` from airlock's source"})
	} else {
		add(check{name: "container engine", ok: true, info: engineUsed(f.endpoint)})
		if res != nil {
			ref, err := f.imageRef(project, res)
			switch ok, ierr := eng.ImageExists(ctx, ref); {
			case err != nil:
				add(check{name: "image", info: err.Error(), fix: "fix what the message names: [image] in the configuration, or the project's .devcontainer/devcontainer.json"})
			case ierr != nil:
				add(check{name: "image", info: ierr.Error()})
			case !ok && pulledAs(eng, ref) != ref:
				add(check{name: "image", info: fmt.Sprintf("%s is neither on the cluster's nodes nor in the registry the pods pull it from (%s)", ref, pulledAs(eng, ref)),
					fix: "run `airlock image build`, which pushes it there"})
			case !ok:
				add(check{name: "image", info: ref + " not built", fix: "run `airlock image build` (`--base bootstrap` where no image registry is reachable)"})
			default:
				imageBuilt = true
				add(check{name: "image", ok: true, info: ref})
			}
		}
		if reg := cfg.Engine.Kubernetes.Registry; f.endpoint.Kind == sandbox.KindKubernetes && res != nil {
			add(registryCheck(reg, res.From("engine.kubernetes.registry")))
		}
		if pp, ok := eng.(policyProber); ok && imageBuilt {
			ref, _ := f.imageRef(project, res)
			add(policyCheck(ctx, pp, ref))
		}
		if rt := cfg.Sandbox.Runtime; rt != "" {
			if err := sandbox.CheckRuntime(ctx, eng, rt); err != nil {
				add(check{name: "runtime", info: err.Error(), fix: "see docs/gvisor.md"})
			} else {
				add(check{name: "runtime", ok: true, info: rt + " ([sandbox] runtime), registered with the engine"})
			}
		}
	}

	if cfg.Image.Base == config.BootstrapBase {
		if _, err := exec.LookPath("debootstrap"); err != nil {
			// Only building the image needs it: with the image built, runs
			// work and only a rebuild would fail.
			add(check{name: "debootstrap", note: imageBuilt,
				info: "not found; [image] base is bootstrap, so `airlock image build` needs it", fix: "apt-get install debootstrap"})
		}
	}

	file, loaded := map[string]string{}, false
	path, err := credentials.DefaultPath(f.Getenv)
	if err == nil {
		if m, lerr := credentials.Load(path); lerr != nil {
			add(check{name: "credentials", info: lerr.Error()})
		} else {
			file, loaded = m, true
		}
	}
	lookup := envThenFile(f.LookupEnv, file)
	ag := agent.MustLookup(cfg.Agent.Name)
	selected := ""
	if ag.Name() == "claude" {
		selected = provider.Selected(lookup)
	}
	if loaded {
		found := credentials.Resolve(ag.CredentialNames(), f.LookupEnv, file, path)
		var names []string
		for _, s := range found {
			names = append(names, s.Name+" ("+s.From+")")
		}
		name := "credentials (" + ag.Title() + ")"
		switch {
		case len(found) > 0:
			add(check{name: name, ok: true, info: strings.Join(names, ", ")})
		case selected != "":
			// Bedrock or Vertex: the model provider check below is the one.
		default:
			first := ag.CredentialNames()[0]
			add(check{name: name, info: "none found", fix: "export " + first + ", or `airlock credentials set " + first + "` (`airlock demo` needs none)"})
		}
	}
	if selected != "" {
		add(providerCheck(ctx, selected, lookup, f.Now()))
	}

	failed := 0
	for _, c := range checks {
		mark := "ok  "
		switch {
		case c.note:
			mark = "NOTE"
		case !c.ok:
			mark = "FAIL"
			failed++
		}
		fmt.Fprintf(f.IO.Out, "%s  %-16s %s\n", mark, c.name, c.info)
		if !c.ok && c.fix != "" {
			fmt.Fprintf(f.IO.Out, "      %-16s fix: %s\n", "", c.fix)
		}
	}
	if failed > 0 {
		return &ExitError{Code: ExitFailure, Message: fmt.Sprintf("%d check(s) failed", failed)}
	}
	return nil
}

// engineChecks says, for every engine socket found, whether an engine
// answers there. They are notes: only the engine used must answer.
func engineChecks(ctx context.Context, getenv func(string) string) []check {
	var out []check
	for _, ep := range sandbox.Detect(getenv) {
		c := check{name: "engine " + ep.Kind, note: true}
		where := ep.Host + " (" + ep.Why + ")"
		switch eng, err := sandbox.Open(ep); {
		case errors.Is(err, sandbox.ErrUnsupported):
			c.info = where + ": found, but this airlock has no " + ep.Kind + " backend yet"
		case err != nil:
			c.info = where + ": " + err.Error()
		default:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := eng.Ping(pctx); err != nil {
				c.info = where + ": not answering"
			} else {
				c.info, c.ok, c.note = where+": answering", true, false
			}
			cancel()
			if cl, ok := eng.(io.Closer); ok {
				cl.Close()
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		out = append(out, check{name: "engines", note: true, info: "no engine socket found (DOCKER_HOST, Docker's, Podman's or Incus' socket)"})
	}
	return out
}

// engineUsed says which engine airlock uses, and why.
func engineUsed(ep sandbox.Endpoint) string {
	if ep.Kind == sandbox.KindKubernetes {
		return "using kubernetes: " + ep.Why
	}
	host := ep.Host
	if host == "" {
		host = "its default socket"
	}
	return fmt.Sprintf("using %s at %s: %s", ep.Kind, host, ep.Why)
}

// providerCheck fetches the Bedrock or Vertex credentials once, as a run
// would, and says from where and until when.
func providerCheck(ctx context.Context, p string, lookup func(string) (string, bool), now time.Time) check {
	c := check{name: "model provider (" + provider.Title(p) + ")"}
	d, err := checkProvider(ctx, p, lookup)
	if err != nil {
		c.info, c.fix = err.Error(), "see \"Credentials on the host\" in docs/providers.md"
		return c
	}
	c.ok = true
	c.info = strings.Join([]string{providerPlace(d), providerFrom(d), expiryText(d.Expires, now)}, "; ")
	return c
}

// policyProber is an engine that can show whether its cluster enforces
// the network policies its sandboxes rely on (Kubernetes).
type policyProber interface {
	ProbeNetworkPolicy(ctx context.Context, image, binary string) error
}

// policyCheck runs the engine's NetworkPolicy probe: pods that must and
// must not connect.
func policyCheck(ctx context.Context, pp policyProber, image string) check {
	c := check{name: "network policy"}
	exe, err := os.Executable()
	if err != nil {
		c.info = "cannot find the airlock binary for the probe pods: " + err.Error()
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	switch err := pp.ProbeNetworkPolicy(ctx, image, exe); {
	case errors.Is(err, sandbox.ErrPolicyNotEnforced):
		c.info = err.Error()
		c.fix = "install a network plugin that implements NetworkPolicy (Calico, Cilium, kube-network-policies...); until then a sandbox is not isolated on this cluster"
	case err != nil:
		c.info = err.Error()
	default:
		c.ok, c.info = true, "enforced: a probe pod under airlock's deny-all policy could not reach another pod; one a policy allowed could"
	}
	return c
}

// pulledAs is the name the engine's sandboxes get ref under: in the
// configured registry, for a cluster that pulls from one.
func pulledAs(eng any, ref string) string {
	if r, ok := eng.(interface{ ImageRef(string) string }); ok {
		return r.ImageRef(ref)
	}
	return ref
}

// registryCheck says where the cluster's pods get their image: a note,
// since airlock cannot see what the nodes reach.
func registryCheck(reg, from string) check {
	if reg == "" {
		return check{name: "registry", note: true,
			info: "none ([engine.kubernetes] registry): pods use only images loaded into the nodes; `airlock image build` does not push"}
	}
	return check{name: "registry", ok: true,
		info: fmt.Sprintf("%s (%s): `airlock image build` pushes there, pods pull IMAGE from it; the nodes must reach it", reg, from)}
}
