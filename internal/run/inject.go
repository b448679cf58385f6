package run

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// Injection is a credential the run's proxy adds to the requests for a
// host ([[egress.inject]]). The sandbox holds at most its placeholder.
type Injection struct {
	config.Inject
	// Placeholder is the run's stand-in for the secret (not secret
	// itself), in PlaceholderEnv inside the sandbox.
	Placeholder string
	// Secret is the value from Inject.From, resolved on the host when the
	// run starts; it is never recorded.
	Secret string `json:"-"`
}

// NewPlaceholder is a fresh placeholder for an injected credential.
func NewPlaceholder() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "airlock-placeholder-" + hex.EncodeToString(b)
}

// ResolveFunc returns the value of an injection source (env:, file:,
// cmd:), on the host.
type ResolveFunc func(ctx context.Context, source string) (string, error)

// resolveInjections fills in the secrets of a recorded run's injections
// again (they are never stored), for a restart.
func resolveInjections(ctx context.Context, resolve ResolveFunc, list []Injection) error {
	for i := range list {
		if resolve == nil {
			return errors.New("the run has injected credentials, and nothing to resolve them with")
		}
		v, err := resolve(ctx, list[i].From)
		if err != nil {
			return fmt.Errorf("%s: egress.inject: %w", list[i].Source, err)
		}
		list[i].Secret = v
	}
	return nil
}

// injectionPlan is what a run's injections add to its sandbox.
type injectionPlan struct {
	proxy      []egress.Injection
	held       []string
	ca         *egress.CA
	mounts     []sandbox.Mount
	env        []string
	relayFlags []string
}

// caEnv are the variables that point the sandbox's TLS clients at the
// bundle with the run's CA. Each replaces its tool's trust store, so the
// bundle also holds every CA the image trusts.
var caEnv = []string{"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
	"GIT_SSL_CAINFO", "PIP_CERT", "NPM_CONFIG_CAFILE"}

// CAEnv are the variables a run with injected credentials sets to its CA
// bundle.
func CAEnv() []string { return append([]string(nil), caEnv...) }

// planInjection makes a fresh interception CA for the run's injection
// hosts (its key goes to the proxy only), writes its certificate into the
// run directory for the sandbox to mount read-only, and says what the
// proxy and the sandbox get.
func (m *Manager) planInjection(r *store.Run, list []Injection, uid, gid int) (injectionPlan, error) {
	if len(list) == 0 {
		return injectionPlan{}, nil
	}
	var p injectionPlan
	var hosts []string
	for _, in := range list {
		if in.Secret == "" {
			return p, fmt.Errorf("%s: egress.inject: no value for %s", in.Source, in.Host)
		}
		name, value := in.Render(in.Secret)
		pi := egress.Injection{Host: in.Host, Value: value, Placeholder: in.Placeholder, From: in.Source}
		if in.Query != "" {
			pi.Query = name
		} else {
			pi.Header = name
		}
		p.proxy = append(p.proxy, pi)
		p.held = append(p.held, in.Secret)
		hosts = append(hosts, in.Host)
		if in.PlaceholderEnv != "" {
			p.env = append(p.env, in.PlaceholderEnv+"="+in.Placeholder)
		}
	}
	// Valid for the run: until its deadline, or a month for runs without
	// one (a restart makes a new CA).
	notAfter := m.now().Add(30 * 24 * time.Hour)
	if !r.Deadline.IsZero() {
		notAfter = r.Deadline.Add(time.Hour)
	}
	ca, err := egress.NewCA("airlock run "+r.ID, hosts, notAfter)
	if err != nil {
		return p, err
	}
	p.ca = &ca
	path := filepath.Join(m.Store.RunDir(r.ID), "run-ca.pem")
	// In place, not renamed: a restarted container bind-mounts this file.
	if err := os.WriteFile(path, []byte(ca.Cert), 0o644); err != nil {
		return p, fmt.Errorf("prepare injection for run %s: %w", r.ID, err)
	}
	if err := os.Lchown(path, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return p, fmt.Errorf("prepare injection for run %s: %w", r.ID, err)
	}
	p.mounts = []sandbox.Mount{{Source: path, Target: sandbox.RunCAPath, ReadOnly: true}}
	for _, name := range caEnv {
		p.env = append(p.env, name+"="+sandbox.CABundlePath)
	}
	p.relayFlags = []string{"--ca-bundle"}
	return p, nil
}
