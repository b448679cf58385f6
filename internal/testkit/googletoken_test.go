package testkit

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/google"
)

const cloudPlatform = "https://www.googleapis.com/auth/cloud-platform"

func startTokenServer(t *testing.T, lifetime time.Duration) *GoogleTokenServer {
	t.Helper()
	ts := NewGoogleTokenServer(lifetime)
	if _, err := ts.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	return ts
}

// The real golang.org/x/oauth2/google reads the ADC files the server
// writes, gets tokens from it and refreshes them once they expire.
func TestGoogleTokenServerServesOAuth2Library(t *testing.T) {
	for _, kind := range []string{"authorized_user", "service_account"} {
		t.Run(kind, func(t *testing.T) {
			ts := startTokenServer(t, time.Second)
			write := ts.AuthorizedUserFile
			if kind == "service_account" {
				write = ts.ServiceAccountFile
			}
			path, err := write(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), `"type": "`+kind+`"`) {
				t.Fatalf("file is not %s:\n%s", kind, data)
			}
			creds, err := google.CredentialsFromJSON(context.Background(), data, cloudPlatform)
			if err != nil {
				t.Fatal(err)
			}
			first, err := creds.TokenSource.Token()
			if err != nil {
				t.Fatalf("first token: %v (refused: %v)", err, ts.Refused())
			}
			if !ts.Valid(first.AccessToken) || ts.Valid("ya29.forged") {
				t.Fatalf("Valid(issued)=%v Valid(forged)=%v", ts.Valid(first.AccessToken), ts.Valid("ya29.forged"))
			}
			time.Sleep(1100 * time.Millisecond)
			if ts.Valid(first.AccessToken) {
				t.Fatal("token still valid after its lifetime")
			}
			second, err := creds.TokenSource.Token()
			if err != nil {
				t.Fatalf("refresh: %v (refused: %v)", err, ts.Refused())
			}
			if second.AccessToken == first.AccessToken || !ts.Valid(second.AccessToken) || ts.Issued() != 2 {
				t.Errorf("after expiry got %q (valid %v), issued %d; want a fresh valid token, 2 issued", second.AccessToken, ts.Valid(second.AccessToken), ts.Issued())
			}
			if r := ts.Refused(); len(r) != 0 {
				t.Errorf("refused the library: %v", r)
			}
		})
	}
}

func TestGoogleTokenServerRefusesWrongCredentials(t *testing.T) {
	ts := startTokenServer(t, time.Hour)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(otherKey)
	cases := []struct {
		name   string
		write  func(string) (string, error)
		field  string
		value  string
		reason string
	}{
		{"wrong refresh token", ts.AuthorizedUserFile, "refresh_token", "1//stolen", "invalid_grant"},
		{"wrong client secret", ts.AuthorizedUserFile, "client_secret", "GOCSPX-wrong", "invalid_client"},
		{"assertion signed by another key", ts.ServiceAccountFile, "private_key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "signature does not verify"},
		{"another service account", ts.ServiceAccountFile, "client_email", "evil@other.iam.gserviceaccount.com", "issuer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, err := tc.write(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(path)
			var f map[string]string
			if err := json.Unmarshal(data, &f); err != nil {
				t.Fatal(err)
			}
			f[tc.field] = tc.value
			data, _ = json.Marshal(f)
			before := len(ts.Refused())
			creds, err := google.CredentialsFromJSON(context.Background(), data, cloudPlatform)
			if err != nil {
				t.Fatal(err)
			}
			if tok, err := creds.TokenSource.Token(); err == nil {
				t.Fatalf("got token %q with a wrong %s", tok.AccessToken, tc.field)
			}
			r := ts.Refused()
			if len(r) != before+1 || !strings.Contains(r[len(r)-1], tc.reason) {
				t.Errorf("refusals %v, want one more saying %q", r, tc.reason)
			}
		})
	}
	if ts.Issued() != 0 {
		t.Errorf("issued %d tokens to wrong credentials", ts.Issued())
	}
}
