package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/store"
)

// cloudCredentialsFile is where the host hands the proxy refreshed cloud
// credentials, in the run's egress directory (which only the proxy
// mounts), or through the engine when that directory is a copy
// (sandbox.ProxyFileHander). The proxy removes it once read.
const cloudCredentialsFile = "credentials.json"

// cloudRefreshEvery is how often a supervisor asks for the run's cloud
// credentials. Sources refresh minutes ahead of expiry and cache
// otherwise, so asking is cheap.
const cloudRefreshEvery = 15 * time.Second

// CloudFetcher fetches a run's cloud credentials afresh on the host, as
// recorded in r.Cloud.
type CloudFetcher func(ctx context.Context, r *store.Run) (egress.CloudCredentials, error)

// cloudRefresher hands a run's proxy new cloud credentials whenever the
// host's source yields different ones.
type cloudRefresher struct {
	m    *Manager
	last egress.CloudCredentials
	next time.Time
}

// refresh asks for the credentials if it is time, and passes them on if
// they changed. A failure is reported once per refresh attempt: the proxy
// keeps the old credentials, which may still be valid.
func (c *cloudRefresher) refresh(ctx context.Context, r *store.Run) error {
	if r.Cloud == nil || r.Cloud.Static || c.m.CloudCredentials == nil {
		return nil
	}
	now := time.Now()
	if now.Before(c.next) {
		return nil
	}
	c.next = now.Add(cloudRefreshEvery)
	creds, err := c.m.CloudCredentials(ctx, r)
	if err != nil {
		return fmt.Errorf("refresh the %s credentials of run %s: %w", r.Cloud.Provider, r.ID, err)
	}
	if sameCredentials(creds, c.last) {
		return nil
	}
	if err := c.m.handCredentials(ctx, r, creds); err != nil {
		return err
	}
	c.last = creds
	return nil
}

func sameCredentials(a, b egress.CloudCredentials) bool {
	return a.AccessKeyID == b.AccessKeyID && a.SecretAccessKey == b.SecretAccessKey &&
		a.SessionToken == b.SessionToken && a.Bearer == b.Bearer
}

// handCredentials writes creds for the run's proxy: to a temporary name
// first, so the proxy never reads half a file. An engine whose proxy has a
// copy of the egress directory (Kubernetes) is handed them: a file written
// on the host would never reach the proxy, and a sync would remove it.
func (m *Manager) handCredentials(ctx context.Context, r *store.Run, creds egress.CloudCredentials) error {
	data, err := json.Marshal(creds)
	if err != nil {
		return err
	}
	if h := m.Caps.ProxyFiles; h != nil {
		if err := h.HandProxyFile(ctx, ProxyContainerName(r.ID), cloudCredentialsFile, data); err != nil {
			return fmt.Errorf("hand run %s its refreshed credentials: %w", r.ID, err)
		}
		return nil
	}
	dir := filepath.Join(m.Store.RunDir(r.ID), "egress")
	tmp, err := os.CreateTemp(dir, ".credentials-*")
	if err != nil {
		return fmt.Errorf("hand run %s its refreshed credentials: %w", r.ID, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The proxy runs as the agent's uid and removes the file once read.
		uid, gid := User(m.UID, m.GID)
		if cerr := os.Chown(tmp.Name(), uid, gid); cerr != nil && !errors.Is(cerr, os.ErrPermission) {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, cloudCredentialsFile))
	}
	if err != nil {
		return fmt.Errorf("hand run %s its refreshed credentials: %w", r.ID, err)
	}
	return nil
}

// removeCloudCredentials deletes credentials the proxy did not take up
// (it stopped first).
func (m *Manager) removeCloudCredentials(id string) {
	os.Remove(filepath.Join(m.Store.RunDir(id), "egress", cloudCredentialsFile))
}

// cloudName names a run's model provider for messages.
func cloudName(c *store.Cloud) string {
	if c == nil {
		return "the Anthropic API"
	}
	switch c.Provider {
	case "bedrock":
		return "Amazon Bedrock, " + c.Region
	case "vertex":
		return "Google Vertex AI, " + c.Project + " in " + c.Region
	}
	return c.Provider
}
