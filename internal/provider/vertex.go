package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// CloudPlatformScope is the OAuth scope Vertex AI needs.
const CloudPlatformScope = "https://www.googleapis.com/auth/cloud-platform"

// maxADCFile caps what is read of a credentials file: real ones are a few KB.
const maxADCFile = 1 << 20

func resolveVertex(get func(string) string) (Settings, error) {
	s := Settings{Provider: Vertex, Region: get("CLOUD_ML_REGION"), Project: get("ANTHROPIC_VERTEX_PROJECT_ID")}
	if s.Region == "" {
		return Settings{}, errors.New("Vertex: CLOUD_ML_REGION is not set (Claude Code needs it with CLAUDE_CODE_USE_VERTEX): export CLOUD_ML_REGION, e.g. us-east5 or global")
	}
	if s.Project == "" {
		return Settings{}, errors.New("Vertex: ANTHROPIC_VERTEX_PROJECT_ID is not set: export your Google Cloud project id")
	}
	switch {
	case get("GOOGLE_APPLICATION_CREDENTIALS") != "":
		s.CredentialsFile = get("GOOGLE_APPLICATION_CREDENTIALS")
	case get("CLOUDSDK_CONFIG") != "":
		s.CredentialsFile = filepath.Join(get("CLOUDSDK_CONFIG"), "application_default_credentials.json")
	case get("HOME") != "":
		s.CredentialsFile = filepath.Join(get("HOME"), ".config", "gcloud", "application_default_credentials.json")
	}
	return s, nil
}

func openVertex(ctx context.Context, s Settings, get func(string) string, fw hostFirmware) (Source, error) {
	if s.Region == "" {
		return nil, errors.New("Vertex: no region: export CLOUD_ML_REGION, e.g. us-east5 or global")
	}
	if s.Project == "" {
		return nil, errors.New("Vertex: ANTHROPIC_VERTEX_PROJECT_ID is not set: export your Google Cloud project id")
	}
	// The token source keeps this context for every refresh while the run
	// lasts: keep its values (an HTTP client), not its deadline.
	ctx = context.WithoutCancel(ctx)
	desc := Description{Provider: Vertex, Region: s.Region, Project: s.Project}
	home := get("HOME")

	found := false
	if s.CredentialsFile != "" {
		ok, err := fileExists(s.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("Vertex: Application Default Credentials %s: %w", s.CredentialsFile, err)
		}
		found = ok
		if !ok && s.CredentialsFile == get("GOOGLE_APPLICATION_CREDENTIALS") {
			return nil, fmt.Errorf("Vertex: GOOGLE_APPLICATION_CREDENTIALS names %s, which does not exist: correct it, or unset it and run `gcloud auth application-default login`", s.CredentialsFile)
		}
	}
	if found {
		creds, err := credentialsFromFile(ctx, s.CredentialsFile, home, &desc)
		if err != nil {
			return nil, err
		}
		return newVertexSource(creds.TokenSource, desc), nil
	}
	// The metadata server only where the firmware says this is a Google VM
	// (or the user named one): elsewhere 169.254.169.254 is not Google's,
	// and probing for it (metadata.OnGCE) would send packets there.
	if fw.onGCE() || get("GCE_METADATA_HOST") != "" {
		creds, err := google.FindDefaultCredentials(ctx, CloudPlatformScope)
		if err != nil {
			return nil, fmt.Errorf("Vertex: no Application Default Credentials and the metadata server gave none: %w; run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS", err)
		}
		desc.From = "GCE metadata server (the VM's service account)"
		return newVertexSource(creds.TokenSource, desc), nil
	}
	where := ""
	if s.CredentialsFile != "" {
		where = " (no " + tildify(s.CredentialsFile, home) + ")"
	}
	return nil, fmt.Errorf("Vertex: no Application Default Credentials%s: run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS", where)
}

// credentialsFromFile reads an ADC file, refusing types it does not know
// (the library's advice for files it did not write), and fills in desc.
func credentialsFromFile(ctx context.Context, path, home string, desc *Description) (*google.Credentials, error) {
	shown := tildify(path, home)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("Vertex: read Application Default Credentials: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxADCFile+1))
	if err != nil {
		return nil, fmt.Errorf("Vertex: read Application Default Credentials %s: %w", shown, err)
	}
	if len(data) > maxADCFile {
		return nil, fmt.Errorf("Vertex: %s is larger than %d bytes: not a credentials file", shown, maxADCFile)
	}
	var head struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		Account     string `json:"account"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		// The JSON error says where, not what: the file holds secrets.
		return nil, fmt.Errorf("Vertex: %s is not JSON: run `gcloud auth application-default login` to write it again", shown)
	}
	switch t := google.CredentialsType(head.Type); t {
	case google.AuthorizedUser, google.ExternalAccountAuthorizedUser, google.ExternalAccount, google.ImpersonatedServiceAccount:
		desc.From = "Application Default Credentials " + shown + " (" + head.Type + ")"
		desc.Identity = head.Account
	case google.ServiceAccount:
		desc.From = "service account " + head.ClientEmail + " (" + shown + ")"
		desc.Identity = head.ClientEmail
	default:
		return nil, fmt.Errorf("Vertex: %s has credentials of type %q, which airlock does not use: use authorized_user (`gcloud auth application-default login`) or service_account", shown, head.Type)
	}
	creds, err := google.CredentialsFromJSONWithType(ctx, data, google.CredentialsType(head.Type), CloudPlatformScope)
	if err != nil {
		return nil, fmt.Errorf("Vertex: Application Default Credentials %s: %w", shown, err)
	}
	return creds, nil
}

// vertexSource reuses a token until RefreshAhead before it expires.
type vertexSource struct {
	ts oauth2.TokenSource

	mu   sync.Mutex
	desc Description
}

func newVertexSource(ts oauth2.TokenSource, desc Description) *vertexSource {
	return &vertexSource{ts: oauth2.ReuseTokenSourceWithExpiry(nil, ts, RefreshAhead), desc: desc}
}

func (v *vertexSource) Credentials(ctx context.Context) (Credentials, error) {
	if err := ctx.Err(); err != nil {
		return Credentials{}, err
	}
	tok, err := v.ts.Token()
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil {
		return Credentials{}, fmt.Errorf("Vertex: get an access token from %s: %w; run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS", v.desc.From, err)
	}
	v.desc.Expires = tok.Expiry
	return Credentials{Bearer: tok.AccessToken, Expires: tok.Expiry}, nil
}

func (v *vertexSource) Describe() Description {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.desc
}
