package egress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// CloudAuth says how the model-API endpoint authenticates to a cloud
// provider whose credentials cannot be a fixed header: "sigv4" signs every
// request (Amazon Bedrock), "bearer" sets Authorization: Bearer with a token
// that expires (Google Vertex AI, or a Bedrock API key). The host refreshes
// the credentials while a run lasts (WatchCredentials).
type CloudAuth struct {
	Kind    string `json:"kind"`
	Service string `json:"service,omitempty"` // the SigV4 signing name, e.g. "bedrock"
	Region  string `json:"region,omitempty"`  // the SigV4 region
}

// Cloud authentication kinds.
const (
	CloudSigV4  = "sigv4"
	CloudBearer = "bearer"
)

var sigv4Name = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (a CloudAuth) check() error {
	switch a.Kind {
	case CloudBearer:
		return nil
	case CloudSigV4:
		if !sigv4Name.MatchString(a.Service) || !sigv4Name.MatchString(a.Region) {
			return fmt.Errorf("model API signing: service %q and region %q must be names like bedrock and us-east-1", a.Service, a.Region)
		}
		return nil
	}
	return fmt.Errorf("model API signing: unknown kind %q: use sigv4 or bearer", a.Kind)
}

// CloudCredentials are the secret half of CloudAuth, as the host last
// fetched them: AWS keys for SigV4, or a bearer token.
type CloudCredentials struct {
	AccessKeyID     string    `json:"access_key_id,omitempty"`
	SecretAccessKey string    `json:"secret_access_key,omitempty"`
	SessionToken    string    `json:"session_token,omitempty"`
	Bearer          string    `json:"bearer,omitempty"`
	Expires         time.Time `json:"expires,omitzero"`
}

// Secrets are the values the secret scan must never let out. The access
// key id is not secret, but it names the account: it is held too.
func (c CloudCredentials) Secrets() []string {
	var s []string
	for _, v := range []string{c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Bearer} {
		if v != "" {
			s = append(s, v)
		}
	}
	return s
}

func (c CloudCredentials) usable(kind string) bool {
	if kind == CloudBearer {
		return c.Bearer != ""
	}
	return c.AccessKeyID != "" && c.SecretAccessKey != ""
}

// maxSignedBody bounds a request the proxy buffers to sign: SigV4 covers
// the body's hash. A model request is the conversation so far, well under
// this.
const maxSignedBody = 64 << 20

// cloudAuthenticator authenticates forwarded model requests with the
// current credentials, which WatchCredentials replaces.
type cloudAuthenticator struct {
	auth   CloudAuth
	cur    atomic.Pointer[CloudCredentials]
	signer *v4.Signer
	now    func() time.Time
}

func newCloudAuthenticator(a CloudAuth, c CloudCredentials) (*cloudAuthenticator, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	if !c.usable(a.Kind) {
		return nil, fmt.Errorf("model API signing (%s): no credentials", a.Kind)
	}
	ca := &cloudAuthenticator{auth: a, signer: v4.NewSigner(), now: time.Now}
	ca.cur.Store(&c)
	return ca, nil
}

// authenticate adds the credential to r, the proxy's own outgoing request
// (the agent's credential headers are already stripped).
func (ca *cloudAuthenticator) authenticate(r *http.Request) error {
	c := ca.cur.Load()
	if ca.auth.Kind == CloudBearer {
		r.Header.Set("Authorization", "Bearer "+c.Bearer)
		return nil
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxSignedBody+1))
		r.Body.Close()
		if err != nil {
			return fmt.Errorf("read the request to sign it: %w", err)
		}
		if len(body) > maxSignedBody {
			return fmt.Errorf("request body over %d MiB: not signed", maxSignedBody>>20)
		}
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.ContentLength = int64(len(body))
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	r.Header.Del("Content-Length")
	r.Header.Set("X-Amz-Content-Sha256", hash)
	creds := aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
	return ca.signer.SignHTTP(r.Context(), creds, r, hash, ca.auth.Service, ca.auth.Region, ca.now().UTC())
}

// authTransport authenticates each request just before it leaves, after
// every header is final: a SigV4 signature covers them.
type authTransport struct {
	base http.RoundTripper
	auth *cloudAuthenticator
}

func (t authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	if err := t.auth.authenticate(out); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	return t.base.RoundTrip(out)
}

// SetCloudCredentials replaces the credentials the model-API endpoint
// authenticates with, and adds them to the secrets the scan refuses to let
// out. The old ones stay held: they may still be valid.
func (s *Server) SetCloudCredentials(c CloudCredentials) error {
	if s.cloud == nil {
		return errors.New("the model API endpoint signs nothing")
	}
	if !c.usable(s.cloud.auth.Kind) {
		return fmt.Errorf("new %s credentials are incomplete", s.cloud.auth.Kind)
	}
	s.heldMu.Lock()
	s.held = append(s.held, c.Secrets()...)
	s.scanner.Store(NewScanner(s.held))
	s.heldMu.Unlock()
	s.cloud.cur.Store(&c)
	return nil
}

// maxCredentialsFile bounds a refresh file; real ones are a few KiB.
const maxCredentialsFile = 64 << 10

// credentialsPoll is how often the proxy looks for refreshed credentials.
// The host writes them minutes before the old ones expire.
const credentialsPoll = time.Second

// WatchCredentials applies the credentials the host writes to path (JSON
// CloudCredentials) until ctx ends, removing the file once read so that no
// secret stays on disk. The file is in a directory only the proxy and the
// host mount; it is still opened without following links.
func (s *Server) WatchCredentials(ctx context.Context, path string, logf func(format string, args ...any)) {
	t := time.NewTicker(credentialsPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, err := readCredentialsFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil {
			err = s.SetCloudCredentials(c)
		}
		// Removed once taken up, not before: the host (and a test) reads
		// its absence as "the proxy signs with these now".
		os.Remove(path)
		if err != nil {
			logf("proxy: refreshed credentials not applied: %v", err)
		}
	}
}

func readCredentialsFile(path string) (CloudCredentials, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return CloudCredentials{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return CloudCredentials{}, err
	}
	if !st.Mode().IsRegular() {
		return CloudCredentials{}, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCredentialsFile+1))
	if err != nil {
		return CloudCredentials{}, err
	}
	if len(data) > maxCredentialsFile {
		return CloudCredentials{}, fmt.Errorf("%s is over %d KiB", path, maxCredentialsFile>>10)
	}
	var c CloudCredentials
	if err := json.Unmarshal(data, &c); err != nil {
		return CloudCredentials{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
