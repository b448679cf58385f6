package cli

import (
	"context"
	"fmt"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/credentials"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/provider"
	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
)

// credentialLookup finds the agent's credentials and the variables that
// choose them, by name: the environment first, then airlock's credentials
// file.
func (f *Factory) credentialLookup(ag agent.Agent) (func(string) (string, bool), error) {
	path, err := credentials.DefaultPath(f.Getenv)
	if err != nil {
		return nil, err
	}
	file, err := credentials.Load(path)
	if err != nil {
		return nil, err
	}
	found := credentials.Resolve(ag.CredentialNames(), f.LookupEnv, file, path)
	return func(name string) (string, bool) {
		for _, s := range found {
			if s.Name == name {
				return s.Value, true
			}
		}
		return "", false
	}, nil
}

// providerLookup is credentialLookup, then the environment for the
// variables that find a cloud provider's credentials on the host
// (AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, HOME, ...).
func (f *Factory) providerLookup(ag agent.Agent) (func(string) (string, bool), error) {
	lookup, err := f.credentialLookup(ag)
	if err != nil {
		return nil, err
	}
	return func(name string) (string, bool) {
		if v, ok := lookup(name); ok {
			return v, true
		}
		return f.LookupEnv(name)
	}, nil
}

// cloudEgress fetches the host's credentials for the cloud model provider
// auth names, once now so that a run without usable ones fails before
// anything is made; supervisors fetch them again as they expire
// (cloudFetcher).
func (f *Factory) cloudEgress(ctx context.Context, ag agent.Agent, auth agent.APIAuth) (*run.CloudEgress, error) {
	if auth.Cloud == nil {
		return nil, nil
	}
	lookup, err := f.providerLookup(ag)
	if err != nil {
		return nil, err
	}
	s, err := provider.Resolve(auth.Cloud.Provider, lookup)
	if err != nil {
		return nil, err
	}
	c, err := f.cloudCredentials(ctx, s, lookup)
	if err != nil {
		return nil, err
	}
	ce := &run.CloudEgress{Settings: storeCloud(s), Credentials: egressCredentials(c)}
	if c.AWS != nil {
		ce.Auth = egress.CloudAuth{Kind: egress.CloudSigV4, Service: "bedrock", Region: s.Region}
	} else {
		ce.Auth = egress.CloudAuth{Kind: egress.CloudBearer}
	}
	return ce, nil
}

// cloudCredentials fetches credentials from the source for s, opening it
// the first time: one source per setting, so that its cache (and the SDK's
// refresh ahead of expiry) serves every run that uses it.
func (f *Factory) cloudCredentials(ctx context.Context, s provider.Settings, lookup func(string) (string, bool)) (provider.Credentials, error) {
	f.cloudMu.Lock()
	defer f.cloudMu.Unlock()
	src := f.cloud[s]
	if src == nil {
		var err error
		if src, err = provider.Open(ctx, s, lookup); err != nil {
			return provider.Credentials{}, err
		}
		if f.cloud == nil {
			f.cloud = map[provider.Settings]provider.Source{}
		}
		f.cloud[s] = src
	}
	return src.Credentials(ctx)
}

// cloudFetcher fetches a run's cloud credentials again from what the run
// recorded.
func (f *Factory) cloudFetcher() run.CloudFetcher {
	return func(ctx context.Context, r *store.Run) (egress.CloudCredentials, error) {
		if r.Cloud == nil {
			return egress.CloudCredentials{}, fmt.Errorf("run %s has no cloud credentials", r.ID)
		}
		ag, err := agent.Lookup(r.Agent)
		if err != nil {
			return egress.CloudCredentials{}, err
		}
		lookup, err := f.providerLookup(ag)
		if err != nil {
			return egress.CloudCredentials{}, err
		}
		c, err := f.cloudCredentials(ctx, providerSettings(*r.Cloud), lookup)
		if err != nil {
			return egress.CloudCredentials{}, err
		}
		return egressCredentials(c), nil
	}
}

func storeCloud(s provider.Settings) store.Cloud {
	return store.Cloud{Provider: s.Provider, Region: s.Region, Project: s.Project, Profile: s.Profile,
		ConfigFile: s.ConfigFile, CredentialsFile: s.CredentialsFile, Static: s.Static}
}

func providerSettings(c store.Cloud) provider.Settings {
	return provider.Settings{Provider: c.Provider, Region: c.Region, Project: c.Project, Profile: c.Profile,
		ConfigFile: c.ConfigFile, CredentialsFile: c.CredentialsFile, Static: c.Static}
}

func egressCredentials(c provider.Credentials) egress.CloudCredentials {
	e := egress.CloudCredentials{Bearer: c.Bearer, Expires: c.Expires}
	if c.AWS != nil {
		e.AccessKeyID, e.SecretAccessKey, e.SessionToken = c.AWS.AccessKeyID, c.AWS.SecretAccessKey, c.AWS.SessionToken
	}
	return e
}

// describeCloud says, before a run, which cloud provider and credentials
// its proxy signs with.
func describeCloud(c *run.CloudEgress) string {
	if c == nil {
		return ""
	}
	s := c.Settings
	where := s.Region
	if s.Project != "" {
		where = s.Project + ", " + where
	}
	if s.Profile != "" {
		where += ", profile " + s.Profile
	}
	how := "refreshed on this machine as they expire"
	if s.Static {
		how = "as given"
	}
	return fmt.Sprintf("  model  %s (%s): the proxy signs each request with this machine's credentials (%s)\n", provider.Title(s.Provider), where, how)
}
