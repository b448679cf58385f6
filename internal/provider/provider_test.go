package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// isolateAWS keeps the SDK, which also reads this process's environment,
// away from the machine's own AWS settings and from instance metadata.
func isolateAWS(t *testing.T) {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_STS", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_BEARER_TOKEN_BEDROCK"} {
		t.Setenv(k, "")
	}
}

// notCloud is firmware that is neither EC2 nor GCE.
func notCloud(t *testing.T) hostFirmware { return hostFirmware{dir: t.TempDir()} }

func write(t *testing.T, path, text string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name, provider string
		env            map[string]string
		want           Settings
		wantErr        string
	}{
		{"bedrock static keys", Bedrock,
			map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/h"},
			Settings{Provider: Bedrock, Region: "us-east-1", Static: true}, ""},
		{"bedrock api key", Bedrock,
			map[string]string{"AWS_DEFAULT_REGION": "eu-west-1", "AWS_BEARER_TOKEN_BEDROCK": "k"},
			Settings{Provider: Bedrock, Region: "eu-west-1", Static: true}, ""},
		{"bedrock default files", Bedrock,
			map[string]string{"AWS_REGION": "us-west-2", "AWS_PROFILE": "dev", "HOME": "/h"},
			Settings{Provider: Bedrock, Region: "us-west-2", Profile: "dev", ConfigFile: "/h/.aws/config", CredentialsFile: "/h/.aws/credentials"}, ""},
		{"bedrock files from variables", Bedrock,
			map[string]string{"AWS_REGION": "us-west-2", "AWS_CONFIG_FILE": "/c", "AWS_SHARED_CREDENTIALS_FILE": "/k"},
			Settings{Provider: Bedrock, Region: "us-west-2", ConfigFile: "/c", CredentialsFile: "/k"}, ""},
		{"bedrock AWS_REGION wins", Bedrock,
			map[string]string{"AWS_REGION": "a", "AWS_DEFAULT_REGION": "b", "HOME": "/h"},
			Settings{Provider: Bedrock, Region: "a", ConfigFile: "/h/.aws/config", CredentialsFile: "/h/.aws/credentials"}, ""},
		{"bedrock no region", Bedrock, map[string]string{"HOME": "/h"}, Settings{}, "AWS_REGION is not set"},
		{"bedrock half a key", Bedrock, map[string]string{"AWS_REGION": "a", "AWS_ACCESS_KEY_ID": "AKID"}, Settings{}, "AWS_SECRET_ACCESS_KEY is not"},
		{"bedrock no home", Bedrock, map[string]string{"AWS_REGION": "a"}, Settings{}, "HOME is not set"},
		{"vertex explicit file", Vertex,
			map[string]string{"CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "p", "GOOGLE_APPLICATION_CREDENTIALS": "/sa.json", "CLOUDSDK_CONFIG": "/g", "HOME": "/h"},
			Settings{Provider: Vertex, Region: "us-east5", Project: "p", CredentialsFile: "/sa.json"}, ""},
		{"vertex CLOUDSDK_CONFIG", Vertex,
			map[string]string{"CLOUD_ML_REGION": "global", "ANTHROPIC_VERTEX_PROJECT_ID": "p", "CLOUDSDK_CONFIG": "/g", "HOME": "/h"},
			Settings{Provider: Vertex, Region: "global", Project: "p", CredentialsFile: "/g/application_default_credentials.json"}, ""},
		{"vertex gcloud default", Vertex,
			map[string]string{"CLOUD_ML_REGION": "global", "ANTHROPIC_VERTEX_PROJECT_ID": "p", "HOME": "/h"},
			Settings{Provider: Vertex, Region: "global", Project: "p", CredentialsFile: "/h/.config/gcloud/application_default_credentials.json"}, ""},
		{"vertex no region", Vertex, map[string]string{"ANTHROPIC_VERTEX_PROJECT_ID": "p"}, Settings{}, "CLOUD_ML_REGION is not set"},
		{"vertex no project", Vertex, map[string]string{"CLOUD_ML_REGION": "global"}, Settings{}, "ANTHROPIC_VERTEX_PROJECT_ID is not set"},
		{"unknown", "azure", nil, Settings{}, `unknown model provider "azure"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.provider, lookupIn(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve = %+v, %v; want an error saying %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Resolve = %+v, %v; want %+v", got, err, tc.want)
			}
			// A run records the settings; another process reads them back.
			b, _ := json.Marshal(got)
			var back Settings
			if err := json.Unmarshal(b, &back); err != nil || back != got {
				t.Fatalf("settings do not survive JSON: %s", b)
			}
		})
	}
}

func TestSelected(t *testing.T) {
	for env, want := range map[string]string{"CLAUDE_CODE_USE_BEDROCK=1": Bedrock, "CLAUDE_CODE_USE_VERTEX=true": Vertex,
		"CLAUDE_CODE_USE_BEDROCK=0": "", "": ""} {
		m := map[string]string{}
		if k, v, ok := strings.Cut(env, "="); ok {
			m[k] = v
		}
		if got := Selected(lookupIn(m)); got != want {
			t.Errorf("Selected(%s) = %q, want %q", env, got, want)
		}
	}
}

func TestFirmware(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    map[string]string
		ec2, gce bool
	}{
		{"nitro", map[string]string{"sys_vendor": "Amazon EC2\n", "product_name": "m5.large"}, true, false},
		{"xen ec2", map[string]string{"bios_version": "4.11.amazon"}, true, false},
		{"gce", map[string]string{"product_name": "Google Compute Engine", "sys_vendor": "Google"}, false, true},
		{"laptop", map[string]string{"sys_vendor": "LENOVO", "product_name": "20XW"}, false, false},
		{"qemu", map[string]string{"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)"}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range tc.files {
				write(t, filepath.Join(dir, name), text, 0o644)
			}
			fw := hostFirmware{dir: dir}
			if fw.onEC2() != tc.ec2 || fw.onGCE() != tc.gce {
				t.Fatalf("onEC2 = %v, onGCE = %v; want %v, %v", fw.onEC2(), fw.onGCE(), tc.ec2, tc.gce)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	c := Credentials{AWS: &AWSCredentials{AccessKeyID: "AKID", SecretAccessKey: "sec", SessionToken: ""}, Bearer: "tok"}
	if got, want := c.Secrets(), []string{"AKID", "sec", "tok"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Secrets = %q, want %q", got, want)
	}
	if got := (Credentials{}).Secrets(); len(got) != 0 {
		t.Fatalf("Secrets of nothing = %q", got)
	}
}

// Bedrock sources from variables and from the shared files, through the real
// SDK: what the proxy signs with, and what `credentials ls` shows.
func TestBedrockOpen(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		files   map[string]string // under HOME
		want    Credentials
		from    string
		wantErr string
	}{
		{name: "environment keys",
			env:  map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": "sess"},
			want: Credentials{AWS: &AWSCredentials{"AKIDENV", secret, "sess"}}, from: "session keys (AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN; expiry unknown"},
		{name: "environment keys without a session",
			env:  map[string]string{"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": secret},
			want: Credentials{AWS: &AWSCredentials{"AKIDENV", secret, ""}}, from: "static keys (AWS_ACCESS_KEY_ID)"},
		{name: "api key",
			env:  map[string]string{"AWS_REGION": "us-east-1", "AWS_BEARER_TOKEN_BEDROCK": secret, "AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "x"},
			want: Credentials{Bearer: secret}, from: "AWS_BEARER_TOKEN_BEDROCK"},
		{name: "named profile in the credentials file",
			env: map[string]string{"AWS_REGION": "us-east-1", "AWS_PROFILE": "dev"},
			files: map[string]string{".aws/credentials": "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = other\n" +
				"[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = " + secret + "\n"},
			want: Credentials{AWS: &AWSCredentials{"AKIDDEV", secret, ""}}, from: "profile dev in ~/.aws/credentials (static keys)"},
		{name: "default profile in the config file",
			env:   map[string]string{"AWS_REGION": "us-east-1"},
			files: map[string]string{".aws/config": "[default]\naws_access_key_id = AKIDCFG\naws_secret_access_key = " + secret + "\n"},
			want:  Credentials{AWS: &AWSCredentials{"AKIDCFG", secret, ""}}, from: "profile default in ~/.aws/credentials (static keys)"},
		{name: "missing profile",
			env:     map[string]string{"AWS_REGION": "us-east-1", "AWS_PROFILE": "nope"},
			files:   map[string]string{".aws/config": "[profile dev]\nregion = us-east-1\n"},
			wantErr: "AWS profile nope (AWS_PROFILE) is in neither ~/.aws/config, ~/.aws/credentials"},
		{name: "profile without credentials",
			env:     map[string]string{"AWS_REGION": "us-east-1", "AWS_PROFILE": "dev"},
			files:   map[string]string{".aws/config": "[profile dev]\nregion = us-east-1\n"},
			wantErr: "no AWS credentials for profile dev (~/.aws/config, ~/.aws/credentials): run `aws configure --profile dev`"},
		{name: "no files at all",
			env:     map[string]string{"AWS_REGION": "us-east-1"},
			wantErr: "no AWS credentials for profile default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWS(t)
			home := t.TempDir()
			env := map[string]string{"HOME": home}
			for k, v := range tc.env {
				env[k] = v
			}
			for name, text := range tc.files {
				write(t, filepath.Join(home, name), text, 0o600)
			}
			ctx := context.Background()
			s, err := Resolve(Bedrock, lookupIn(env))
			var src Source
			if err == nil {
				src, err = open(ctx, s, lookupIn(env), notCloud(t))
			}
			var got Credentials
			if err == nil {
				got, err = src.Credentials(ctx)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %+v, %v; want an error saying %q", got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Credentials = %+v, want %+v", got, tc.want)
			}
			d := src.Describe()
			if d.Provider != Bedrock || d.Region != "us-east-1" || !strings.Contains(d.From, tc.from) {
				t.Fatalf("Describe = %+v; want Bedrock in us-east-1 from %q", d, tc.from)
			}
			if got.AWS != nil && d.Identity != got.AWS.AccessKeyID {
				t.Fatalf("Describe().Identity = %q, want the access key id %q", d.Identity, got.AWS.AccessKeyID)
			}
			if strings.Contains(fmt.Sprintf("%+v", d), secret) {
				t.Fatalf("Describe shows the secret: %+v", d)
			}
		})
	}
}

// A run whose static keys are gone from this process's variables cannot
// sign: one clear error, not an unsigned request.
func TestBedrockStaticGone(t *testing.T) {
	isolateAWS(t)
	_, err := open(context.Background(), Settings{Provider: Bedrock, Region: "us-east-1", Static: true}, lookupIn(nil), notCloud(t))
	if err == nil || !strings.Contains(err.Error(), "not set here") {
		t.Fatalf("open = %v; want an error saying the keys are not set here", err)
	}
}

// refresher is one refreshing credential source under test: a way to set it
// up with credentials of a given lifetime, and how many times it was asked
// for new ones.
type refresher struct {
	name  string
	setup func(t *testing.T, lifetime time.Duration) (Source, func() int)
}

// credentialProcess writes a credential_process that prints new keys
// (AKIDPROC<n>) valid for lifetime, counting its runs in a file.
func credentialProcess(t *testing.T, lifetime time.Duration) (Source, func() int) {
	isolateAWS(t)
	home := t.TempDir()
	count := filepath.Join(home, "count")
	script := write(t, filepath.Join(home, "creds.sh"), fmt.Sprintf(`#!/bin/sh
n=$(( $(cat %[1]s 2>/dev/null || echo 0) + 1 ))
echo $n > %[1]s
exp=$(date -u -d "+%[2]d seconds" +%%Y-%%m-%%dT%%H:%%M:%%SZ)
printf '{"Version":1,"AccessKeyId":"AKIDPROC%%d","SecretAccessKey":"secret%%d","SessionToken":"session%%d","Expiration":"%%s"}\n' $n $n $n "$exp"
`, count, int(lifetime.Seconds())), 0o755)
	write(t, filepath.Join(home, ".aws", "config"), "[profile ci]\ncredential_process = "+script+"\n", 0o600)
	env := map[string]string{"HOME": home, "AWS_REGION": "us-east-1", "AWS_PROFILE": "ci"}
	s, err := Resolve(Bedrock, lookupIn(env))
	if err != nil {
		t.Fatal(err)
	}
	src, err := open(context.Background(), s, lookupIn(env), notCloud(t))
	if err != nil {
		t.Fatal(err)
	}
	if d := src.Describe(); d.From != "profile ci in ~/.aws/config (credential_process)" {
		t.Fatalf("Describe().From = %q", d.From)
	}
	return src, func() int {
		b, _ := os.ReadFile(count)
		var n int
		fmt.Sscan(string(b), &n)
		return n
	}
}

// googleTokens starts testkit's loopback Google token server, whose access
// tokens live for lifetime.
func googleTokens(t *testing.T, lifetime time.Duration) *testkit.GoogleTokenServer {
	t.Helper()
	srv := testkit.NewGoogleTokenServer(lifetime)
	if _, err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func openVertexFile(t *testing.T, home, path string) Source {
	t.Helper()
	env := map[string]string{"HOME": home, "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "proj", "GOOGLE_APPLICATION_CREDENTIALS": path}
	s, err := Resolve(Vertex, lookupIn(env))
	if err != nil {
		t.Fatal(err)
	}
	src, err := open(context.Background(), s, lookupIn(env), notCloud(t))
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// vertexRefresher wraps a token server's ADC file as a refresher; every
// token the source yields must be one the server issued and still honours.
func vertexRefresher(t *testing.T, srv *testkit.GoogleTokenServer, src Source) (Source, func() int) {
	t.Cleanup(func() {
		if r := srv.Refused(); len(r) > 0 {
			t.Errorf("the token server refused requests: %q", r)
		}
	})
	return checkedSource{src, srv, t}, srv.Issued
}

type checkedSource struct {
	Source
	srv *testkit.GoogleTokenServer
	t   *testing.T
}

func (c checkedSource) Credentials(ctx context.Context) (Credentials, error) {
	cr, err := c.Source.Credentials(ctx)
	if err == nil && !c.srv.Valid(cr.Bearer) {
		c.t.Errorf("the source yielded a token the server does not honour")
	}
	return cr, err
}

func authorizedUser(t *testing.T, lifetime time.Duration) (Source, func() int) {
	srv := googleTokens(t, lifetime)
	home := t.TempDir()
	gcloud := filepath.Join(home, ".config", "gcloud")
	if err := os.MkdirAll(gcloud, 0o700); err != nil {
		t.Fatal(err)
	}
	path, err := srv.AuthorizedUserFile(gcloud)
	if err != nil {
		t.Fatal(err)
	}
	src := openVertexFile(t, home, path)
	if d := src.Describe(); d.From != "Application Default Credentials ~/.config/gcloud/application_default_credentials.json (authorized_user)" || d.Project != "proj" || d.Region != "us-east5" {
		t.Fatalf("Describe = %+v", d)
	}
	return vertexRefresher(t, srv, src)
}

func serviceAccount(t *testing.T, lifetime time.Duration) (Source, func() int) {
	srv := googleTokens(t, lifetime)
	home := t.TempDir()
	path, err := srv.ServiceAccountFile(home)
	if err != nil {
		t.Fatal(err)
	}
	src := openVertexFile(t, home, path)
	const email = "airlock-test@airlock-test.iam.gserviceaccount.com"
	if d := src.Describe(); d.From != "service account "+email+" (~/service-account.json)" || d.Identity != email {
		t.Fatalf("Describe = %+v", d)
	}
	return vertexRefresher(t, srv, src)
}

func secretOf(c Credentials) string {
	if c.AWS != nil {
		return c.AWS.AccessKeyID + "/" + c.AWS.SecretAccessKey + "/" + c.AWS.SessionToken
	}
	return c.Bearer
}

// Credentials are reused while they are good for more than RefreshAhead,
// and fetched again once they are not: the proxy never signs with
// credentials about to expire.
func TestRefresh(t *testing.T) {
	ctx := context.Background()
	for _, r := range []refresher{
		{"credential_process", credentialProcess},
		{"vertex authorized_user", authorizedUser},
		{"vertex service_account", serviceAccount},
	} {
		t.Run(r.name+"/cached until RefreshAhead before expiry", func(t *testing.T) {
			// Good for 2s more than RefreshAhead (whole seconds: the
			// process prints its expiry to the second).
			src, fetches := r.setup(t, RefreshAhead+3*time.Second)
			start := time.Now()
			first, err := src.Credentials(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if left := time.Until(first.Expires); left < RefreshAhead || left > RefreshAhead+4*time.Second {
				t.Fatalf("Expires in %v; want the real expiry, about %v", left, RefreshAhead+3*time.Second)
			}
			if d := src.Describe(); !d.Expires.Equal(first.Expires) {
				t.Fatalf("Describe().Expires = %v, want %v", d.Expires, first.Expires)
			}
			again, err := src.Credentials(ctx)
			if err != nil || secretOf(again) != secretOf(first) || fetches() != 1 {
				t.Fatalf("second call: %v, fetched %d times; want the same credentials, fetched once", err, fetches())
			}
			time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
			fresh, err := src.Credentials(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if secretOf(fresh) == secretOf(first) || fetches() != 2 {
				t.Fatalf("after the refresh point: fetched %d times, new credentials %v; want fetched twice, new ones", fetches(), secretOf(fresh) != secretOf(first))
			}
		})
		t.Run(r.name+"/short-lived are fetched every time", func(t *testing.T) {
			src, fetches := r.setup(t, 4*time.Minute)
			seen := map[string]bool{}
			for range 3 {
				c, err := src.Credentials(ctx)
				if err != nil {
					t.Fatal(err)
				}
				seen[secretOf(c)] = true
			}
			if len(seen) != 3 || fetches() != 3 {
				t.Fatalf("3 calls gave %d distinct credentials in %d fetches; want 3 and 3", len(seen), fetches())
			}
		})
	}
}

func TestVertexOpenErrors(t *testing.T) {
	dir := t.TempDir()
	base := map[string]string{"HOME": dir, "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "proj"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	notJSON := write(t, filepath.Join(dir, "bad.json"), "refresh_token=hunter2-secret", 0o600)
	odd := write(t, filepath.Join(dir, "odd.json"), `{"type":"api_key","key":"hunter2-secret"}`, 0o600)
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"no ADC file", with(), "Vertex: no Application Default Credentials (no ~/.config/gcloud/application_default_credentials.json): run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"},
		{"named file missing", with("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(dir, "gone.json")), "GOOGLE_APPLICATION_CREDENTIALS names " + filepath.Join(dir, "gone.json") + ", which does not exist"},
		{"not JSON", with("GOOGLE_APPLICATION_CREDENTIALS", notJSON), "~/bad.json is not JSON"},
		{"unknown type", with("GOOGLE_APPLICATION_CREDENTIALS", odd), `credentials of type "api_key"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Resolve(Vertex, lookupIn(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			// Firmware that is not a Google VM: no metadata server is asked.
			_, err = open(context.Background(), s, lookupIn(tc.env), notCloud(t))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("open = %v; want an error saying %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error shows the file's secret: %v", err)
			}
		})
	}
}

// A refresh token that the token server refuses is an error naming the fix.
func TestVertexRefused(t *testing.T) {
	srv := googleTokens(t, time.Hour)
	home := t.TempDir()
	path, err := srv.AuthorizedUserFile(home)
	if err != nil {
		t.Fatal(err)
	}
	var adc map[string]string
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &adc); err != nil {
		t.Fatal(err)
	}
	adc["refresh_token"] = "1//revoked"
	b, _ = json.Marshal(adc)
	write(t, path, string(b), 0o600)
	_, err = openVertexFile(t, home, path).Credentials(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gcloud auth application-default login") {
		t.Fatalf("Credentials = %v; want an error saying to log in again", err)
	}
	if strings.Contains(err.Error(), adc["client_secret"]) {
		t.Fatalf("the error shows the client secret: %v", err)
	}
}

// On a Google VM without an ADC file, the VM's service account answers
// (here a loopback metadata server named by GCE_METADATA_HOST).
func TestVertexMetadata(t *testing.T) {
	var tokens atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "no flavor", http.StatusForbidden)
			return
		}
		switch r.URL.Path {
		case "/computeMetadata/v1/instance/service-accounts/default/token":
			fmt.Fprintf(w, `{"access_token":"ya29.gce-%d","token_type":"Bearer","expires_in":3600}`, tokens.Add(1))
		case "/computeMetadata/v1/project/project-id":
			fmt.Fprint(w, "proj")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	home := t.TempDir()
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("HOME", home)
	t.Setenv("CLOUDSDK_CONFIG", "")
	env := map[string]string{"HOME": home, "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "proj", "GCE_METADATA_HOST": strings.TrimPrefix(srv.URL, "http://")}
	s, err := Resolve(Vertex, lookupIn(env))
	if err != nil {
		t.Fatal(err)
	}
	src, err := open(context.Background(), s, lookupIn(env), notCloud(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := src.Credentials(context.Background())
	if err != nil || c.Bearer != "ya29.gce-1" {
		t.Fatalf("Credentials = %+v, %v; want the metadata server's token", c, err)
	}
	if d := src.Describe(); !strings.Contains(d.From, "metadata server") {
		t.Fatalf("Describe().From = %q", d.From)
	}
}

// A profile that assumes a role through STS (here a loopback STS named by
// AWS_ENDPOINT_URL_STS): the source profile's keys sign the AssumeRole
// call, and the role's session credentials are what the proxy gets.
func TestBedrockAssumeRole(t *testing.T) {
	isolateAWS(t)
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("Action") != "AssumeRole" ||
			r.PostForm.Get("RoleArn") != "arn:aws:iam::123456789012:role/bedrock" ||
			!strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDBASE/") {
			http.Error(w, "<ErrorResponse><Error><Code>AccessDenied</Code><Message>bad request</Message></Error></ErrorResponse>", http.StatusForbidden)
			return
		}
		n := calls.Add(1)
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>`+
			`<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/bedrock/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>`+
			`<Credentials><AccessKeyId>ASIAROLE%d</AccessKeyId><SecretAccessKey>rolesecret%d</SecretAccessKey><SessionToken>rolesession%d</SessionToken>`+
			`<Expiration>%s</Expiration></Credentials></AssumeRoleResult><ResponseMetadata><RequestId>r%d</RequestId></ResponseMetadata></AssumeRoleResponse>`,
			n, n, n, time.Now().Add(time.Hour).UTC().Format(time.RFC3339), n)
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL_STS", srv.URL)
	home := t.TempDir()
	write(t, filepath.Join(home, ".aws", "config"), "[profile base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = basesecret\n"+
		"[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/bedrock\nsource_profile = base\n", 0o600)
	env := map[string]string{"HOME": home, "AWS_REGION": "us-east-1", "AWS_PROFILE": "dev"}
	s, err := Resolve(Bedrock, lookupIn(env))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	src, err := open(ctx, s, lookupIn(env), notCloud(t))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		c, err := src.Credentials(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := (AWSCredentials{"ASIAROLE1", "rolesecret1", "rolesession1"}); c.AWS == nil || *c.AWS != want {
			t.Fatalf("Credentials = %+v, want the role's %+v", c.AWS, want)
		}
		if left := time.Until(c.Expires); left < 59*time.Minute || left > time.Hour {
			t.Fatalf("Expires in %v, want about an hour", left)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("STS was called %d times for two fetches within the hour; want once", calls.Load())
	}
	d := src.Describe()
	if d.From != "profile dev in ~/.aws/config (assume role arn:aws:iam::123456789012:role/bedrock from profile base)" || d.Identity != "ASIAROLE1" {
		t.Fatalf("Describe = %+v", d)
	}
}

// The instance role is asked of instance metadata only where the firmware
// says EC2; elsewhere nothing is sent (here a loopback metadata server
// named by AWS_EC2_METADATA_SERVICE_ENDPOINT counts what it gets).
func TestBedrockInstanceMetadataOnlyOnEC2(t *testing.T) {
	for _, onEC2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("ec2=%v", onEC2), func(t *testing.T) {
			isolateAWS(t)
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				switch {
				case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
					w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
					fmt.Fprint(w, "imds-session")
				case r.Header.Get("X-Aws-Ec2-Metadata-Token") != "imds-session":
					http.Error(w, "", http.StatusUnauthorized)
				case strings.HasSuffix(r.URL.Path, "/security-credentials/"), strings.HasSuffix(r.URL.Path, "/security-credentials-extended/"):
					fmt.Fprint(w, "bedrock-role")
				case strings.HasSuffix(r.URL.Path, "/bedrock-role"):
					fmt.Fprintf(w, `{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"ASIAEC2","SecretAccessKey":"ec2secret","Token":"ec2session","Expiration":%q}`,
						time.Now().Add(6*time.Hour).UTC().Format(time.RFC3339))
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			t.Setenv("AWS_EC2_METADATA_DISABLED", "")
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
			fw := notCloud(t)
			if onEC2 {
				write(t, filepath.Join(fw.dir, "sys_vendor"), "Amazon EC2\n", 0o644)
			}
			env := map[string]string{"HOME": t.TempDir(), "AWS_REGION": "us-east-1"}
			s, err := Resolve(Bedrock, lookupIn(env))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			src, err := open(ctx, s, lookupIn(env), fw)
			var c Credentials
			if err == nil {
				c, err = src.Credentials(ctx)
			}
			if !onEC2 {
				if err == nil || !strings.Contains(err.Error(), "no AWS credentials for profile default") || requests.Load() != 0 {
					t.Fatalf("off EC2: %v, %d metadata requests; want an error and none", err, requests.Load())
				}
				return
			}
			if err != nil || c.AWS == nil || c.AWS.AccessKeyID != "ASIAEC2" {
				t.Fatalf("on EC2: %+v, %v; want the instance role's credentials", c.AWS, err)
			}
			if d := src.Describe(); d.From != "EC2 instance role (instance metadata)" {
				t.Fatalf("Describe().From = %q", d.From)
			}
		})
	}
}

// A supervising process may have other AWS keys in its environment than
// the run that recorded the settings: the recorded profile still wins.
func TestBedrockProfileWinsOverProcessEnvironment(t *testing.T) {
	for _, profile := range []string{"", "dev"} {
		t.Run("profile="+profile, func(t *testing.T) {
			isolateAWS(t)
			t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSUPERVISOR")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "supervisorsecret")
			home := t.TempDir()
			name := profile
			if name == "" {
				name = "default"
			}
			write(t, filepath.Join(home, ".aws", "credentials"), "["+name+"]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profilesecret\n", 0o600)
			env := map[string]string{"HOME": home, "AWS_REGION": "us-east-1", "AWS_PROFILE": profile}
			s, err := Resolve(Bedrock, lookupIn(env))
			if err != nil {
				t.Fatal(err)
			}
			src, err := open(context.Background(), s, lookupIn(env), notCloud(t))
			if err != nil {
				t.Fatal(err)
			}
			c, err := src.Credentials(context.Background())
			if err != nil || c.AWS == nil || c.AWS.AccessKeyID != "AKIDPROFILE" {
				t.Fatalf("Credentials = %+v, %v; want the profile's AKIDPROFILE", c.AWS, err)
			}
		})
	}
}
