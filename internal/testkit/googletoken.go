package testkit

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// GoogleTokenServer is a loopback OAuth 2.0 token endpoint (POST /token)
// standing in for oauth2.googleapis.com, so Application Default
// Credentials work without Google. It honours the two grants ADC files
// use: refresh_token (an authorized_user file: `gcloud auth
// application-default login`) and the JWT bearer grant (a service_account
// key file), and issues random access tokens that expire after lifetime.
type GoogleTokenServer struct {
	serving // Close

	lifetime                             time.Duration
	clientID, clientSecret, refreshToken string
	email                                string

	mu      sync.Mutex
	url     string // token_uri once started
	key     *rsa.PrivateKey
	keyID   string
	tokens  map[string]time.Time // access token → expiry
	issued  int
	refused []string
}

// NewGoogleTokenServer returns a token server whose access tokens live for
// lifetime (at least a second: token responses count in whole seconds).
func NewGoogleTokenServer(lifetime time.Duration) *GoogleTokenServer {
	if lifetime < time.Second {
		lifetime = time.Second
	}
	return &GoogleTokenServer{
		lifetime:     lifetime,
		clientID:     newPrefix() + ".apps.googleusercontent.com",
		clientSecret: "GOCSPX-" + randomToken(18),
		refreshToken: "1//" + randomToken(32),
		email:        "airlock-test@airlock-test.iam.gserviceaccount.com",
		tokens:       map[string]time.Time{},
	}
}

// Start listens on addr and serves in the background until Close. It
// returns the token URI the ADC files name.
func (s *GoogleTokenServer) Start(addr string) (string, error) {
	base, err := s.start(addr, "google token server", s)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.url = base + "/token"
	s.mu.Unlock()
	return base + "/token", nil
}

// Valid says whether token was issued here and has not expired.
func (s *GoogleTokenServer) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[token]
	return ok && time.Now().Before(exp)
}

// Issued is how many access tokens the server has issued.
func (s *GoogleTokenServer) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// Refused returns why each refused token request was refused, oldest first.
func (s *GoogleTokenServer) Refused() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

// AuthorizedUserFile writes an authorized_user ADC file for this server in
// dir and returns its path.
func (s *GoogleTokenServer) AuthorizedUserFile(dir string) (string, error) {
	uri, err := s.tokenURI()
	if err != nil {
		return "", err
	}
	return writeJSONFile(filepath.Join(dir, "application_default_credentials.json"), map[string]string{
		"type":          "authorized_user",
		"client_id":     s.clientID,
		"client_secret": s.clientSecret,
		"refresh_token": s.refreshToken,
		"token_uri":     uri,
	})
}

// ServiceAccountFile writes a service_account key file for this server in
// dir and returns its path. The key is generated on first use; the server
// accepts assertions signed with it.
func (s *GoogleTokenServer) ServiceAccountFile(dir string) (string, error) {
	uri, err := s.tokenURI()
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	if s.key == nil {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			s.mu.Unlock()
			return "", fmt.Errorf("generate service account key: %w", err)
		}
		s.key, s.keyID = key, randomHex(20)
	}
	key, keyID := s.key, s.keyID
	s.mu.Unlock()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encode service account key: %w", err)
	}
	return writeJSONFile(filepath.Join(dir, "service-account.json"), map[string]string{
		"type":           "service_account",
		"project_id":     "airlock-test",
		"private_key_id": keyID,
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   s.email,
		"client_id":      "100000000000000000001",
		"auth_uri":       "https://accounts.google.com/o/oauth2/auth",
		"token_uri":      uri,
	})
}

func (s *GoogleTokenServer) tokenURI() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.url == "" {
		return "", errors.New("google token server not started")
	}
	return s.url, nil
}

func writeJSONFile(path string, v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("write credentials file: %w", err)
	}
	return path, nil
}

// ServeHTTP answers POST /token.
func (s *GoogleTokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/token" || r.Method != http.MethodPost {
		s.refuse(w, http.StatusNotFound, "not_found", "no endpoint "+r.Method+" "+r.URL.Path)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		s.refuse(w, http.StatusBadRequest, "invalid_request", "bad form: "+err.Error())
		return
	}
	switch g := r.PostForm.Get("grant_type"); g {
	case "refresh_token":
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if !equal(id, s.clientID) || !equal(secret, s.clientSecret) {
			s.refuse(w, http.StatusUnauthorized, "invalid_client", "Unauthorized")
			return
		}
		if !equal(r.PostForm.Get("refresh_token"), s.refreshToken) {
			s.refuse(w, http.StatusBadRequest, "invalid_grant", "Bad Request")
			return
		}
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		if err := s.checkAssertion(r.PostForm.Get("assertion")); err != nil {
			s.refuse(w, http.StatusBadRequest, "invalid_grant", "Invalid JWT: "+err.Error())
			return
		}
	default:
		s.refuse(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+g)
		return
	}
	token := "ya29.airlock-" + randomToken(32)
	s.mu.Lock()
	s.tokens[token] = time.Now().Add(s.lifetime)
	s.issued++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": token,
		"expires_in":   int(s.lifetime / time.Second),
		"token_type":   "Bearer",
		"scope":        "https://www.googleapis.com/auth/cloud-platform",
	})
}

func (s *GoogleTokenServer) refuse(w http.ResponseWriter, status int, code, desc string) {
	s.mu.Lock()
	s.refused = append(s.refused, code+": "+desc)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// checkAssertion verifies a service account's RS256 JWT the way Google's
// token endpoint does: signed by the key, issued by its email, for this
// token URI, current, and at most an hour long.
func (s *GoogleTokenServer) checkAssertion(jwt string) error {
	s.mu.Lock()
	key, keyID, uri := s.key, s.keyID, s.url
	s.mu.Unlock()
	if key == nil {
		return errors.New("no service account key issued")
	}
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	var header struct{ Alg, Kid string }
	if err := decodeSegment(parts[0], &header); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if header.Alg != "RS256" {
		return fmt.Errorf("algorithm %q, want RS256", header.Alg)
	}
	if header.Kid != "" && header.Kid != keyID {
		return fmt.Errorf("unknown key id %q", header.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return errors.New("signature does not verify")
	}
	var claims struct {
		Iss, Aud, Scope string
		Iat, Exp        int64
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	now := time.Now().Unix()
	switch {
	case claims.Iss != s.email:
		return fmt.Errorf("issuer %q", claims.Iss)
	case claims.Aud != uri:
		return fmt.Errorf("audience %q, want %q", claims.Aud, uri)
	case claims.Scope == "":
		return errors.New("no scope")
	case claims.Exp <= now || claims.Iat > now+300:
		return errors.New("token is not current")
	case claims.Exp-claims.Iat > 3600:
		return errors.New("token lives more than an hour")
	}
	return nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func equal(a, b string) bool {
	return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// randomToken is n random bytes in unpadded URL-safe base64.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
