package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// providerEnv is a home with AWS and gcloud files for the model-provider
// tests, and a factory over exactly the given environment. The AWS SDK
// also reads this process's environment: keep it off the machine's own
// settings and off instance metadata.
func providerFactory(t *testing.T, env map[string]string, airlockFile string) (*Factory, *bytes.Buffer) {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "GCE_METADATA_HOST"} {
		t.Setenv(k, "")
	}
	if airlockFile != "" {
		writeFile(t, filepath.Join(env["XDG_CONFIG_HOME"], "airlock", "credentials"), airlockFile, 0o600)
	}
	var out bytes.Buffer
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	f := &Factory{
		IO:      &IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &bytes.Buffer{}},
		Getenv:  func(k string) string { return env[k] },
		Environ: func() []string { return environ },
		Now:     time.Now,
		Getwd:   func() (string, error) { return env["HOME"], nil },
	}
	return f, &out
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

type providerCase struct {
	name        string
	env         map[string]string // besides HOME and XDG_CONFIG_HOME
	awsFiles    map[string]string // under HOME
	airlockFile string            // airlock's credentials file
	adc         bool              // an authorized_user ADC file from a loopback token server
	want        string            // the provider line of `credentials ls`; "" for none
	doctor      string            // the doctor line, after the mark
	secret      string            // must never be shown
}

const awsSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"

func providerCases() []providerCase {
	return []providerCase{
		{name: "bedrock profile",
			env:      map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1", "AWS_PROFILE": "dev"},
			awsFiles: map[string]string{".aws/credentials": "[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = " + awsSecret + "\n"},
			want:     "Bedrock\tregion us-east-1, profile dev\tprofile dev in ~/.aws/credentials (static keys), AKIDDEV\tdoes not expire",
			doctor:   "ok    model provider (Bedrock) region us-east-1, profile dev; profile dev in ~/.aws/credentials (static keys), AKIDDEV; does not expire",
			secret:   awsSecret},
		{name: "bedrock api key in airlock's file",
			env:         map[string]string{"AWS_REGION": "eu-west-1"},
			airlockFile: "CLAUDE_CODE_USE_BEDROCK=1\nAWS_BEARER_TOKEN_BEDROCK=" + awsSecret + "\n",
			want:        "Bedrock\tregion eu-west-1\tBedrock API key (AWS_BEARER_TOKEN_BEDROCK)\tdoes not expire",
			doctor:      "ok    model provider (Bedrock) region eu-west-1; Bedrock API key (AWS_BEARER_TOKEN_BEDROCK); does not expire",
			secret:      awsSecret},
		{name: "bedrock profile without credentials",
			env:      map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1", "AWS_PROFILE": "dev"},
			awsFiles: map[string]string{".aws/config": "[profile dev]\nregion = us-east-1\n"},
			want:     "Bedrock\tregion us-east-1, profile dev\t(Bedrock: no AWS credentials for profile dev (~/.aws/config, ~/.aws/credentials): run `aws configure --profile dev`",
			doctor:   "FAIL  model provider (Bedrock) Bedrock: no AWS credentials for profile dev"},
		{name: "vertex adc",
			env:    map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "proj"},
			adc:    true,
			want:   "Vertex\tregion us-east5, project proj\tApplication Default Credentials ~/.config/gcloud/application_default_credentials.json (authorized_user)\texpires in ",
			doctor: "ok    model provider (Vertex) region us-east5, project proj; Application Default Credentials ~/.config/gcloud/application_default_credentials.json (authorized_user); expires in "},
		{name: "vertex without project",
			env:    map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "us-east5"},
			want:   "Vertex\t\t(Vertex: ANTHROPIC_VERTEX_PROJECT_ID is not set: export your Google Cloud project id)",
			doctor: "FAIL  model provider (Vertex) Vertex: ANTHROPIC_VERTEX_PROJECT_ID is not set"},
		{name: "vertex without credentials",
			env:    map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "proj"},
			want:   "Vertex\tregion us-east5, project proj\t(Vertex: no Application Default Credentials (no ~/.config/gcloud/application_default_credentials.json): run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS)",
			doctor: "FAIL  model provider (Vertex) Vertex: no Application Default Credentials"},
		{name: "anthropic api",
			env:         map[string]string{"AWS_REGION": "us-east-1"},
			airlockFile: "ANTHROPIC_API_KEY=sk-ant-test\n"},
	}
}

// setupProvider makes the case's home and factory.
func setupProvider(t *testing.T, tc providerCase) (*Factory, *bytes.Buffer) {
	home := t.TempDir()
	env := map[string]string{"HOME": home, "XDG_CONFIG_HOME": filepath.Join(home, ".config")}
	for k, v := range tc.env {
		env[k] = v
	}
	for name, text := range tc.awsFiles {
		writeFile(t, filepath.Join(home, name), text, 0o600)
	}
	if tc.adc {
		srv := testkit.NewGoogleTokenServer(time.Hour)
		if _, err := srv.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		dir := filepath.Join(home, ".config", "gcloud")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.AuthorizedUserFile(dir); err != nil {
			t.Fatal(err)
		}
	}
	return providerFactory(t, env, tc.airlockFile)
}

// `airlock credentials ls` shows the selected model provider's
// credentials: where from, whose, until when; never the secret.
func TestCredentialsListProvider(t *testing.T) {
	for _, tc := range providerCases() {
		t.Run(tc.name, func(t *testing.T) {
			f, out := setupProvider(t, tc)
			if err := credentialsList(context.Background(), f); err != nil {
				t.Fatal(err)
			}
			var line string
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.HasPrefix(l, "Bedrock\t") || strings.HasPrefix(l, "Vertex\t") {
					line = l
				}
			}
			if tc.want == "" && line != "" || !strings.HasPrefix(line, tc.want) {
				t.Fatalf("credentials ls printed:\n%s\nwant a line starting %q", out, tc.want)
			}
			if tc.secret != "" && strings.Contains(out.String(), tc.secret) {
				t.Fatalf("credentials ls shows the secret:\n%s", out)
			}
		})
	}
}

// `airlock doctor` checks the selected model provider by fetching its
// credentials once, and does not ask for an API key the run will not use.
func TestDoctorProvider(t *testing.T) {
	for _, tc := range providerCases() {
		t.Run(tc.name, func(t *testing.T) {
			f, out := setupProvider(t, tc)
			_ = doctorRun(context.Background(), f) // fails on what this machine lacks (a project here)
			text := out.String()
			if tc.doctor == "" {
				if strings.Contains(text, "model provider") {
					t.Fatalf("doctor checked a model provider none selected:\n%s", text)
				}
				return
			}
			if !strings.Contains(text, "\n"+tc.doctor) {
				t.Fatalf("doctor printed:\n%s\nwant a line starting %q", text, tc.doctor)
			}
			if strings.Contains(text, "credentials (Claude Code)") && strings.Contains(text, "none found") {
				t.Fatalf("doctor wants an API key from a %s user:\n%s", tc.name, text)
			}
			if tc.secret != "" && strings.Contains(text, tc.secret) {
				t.Fatalf("doctor shows the secret:\n%s", text)
			}
		})
	}
}

func TestExpiryText(t *testing.T) {
	now := time.Date(2026, 11, 27, 5, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   time.Duration
		zero bool
		want string
	}{
		{zero: true, want: "does not expire"},
		{in: -time.Second, want: "expired"},
		{in: 42 * time.Second, want: "expires in 42s"},
		{in: 42*time.Minute + 30*time.Second, want: "expires in 42m"},
		{in: 3*time.Hour + 5*time.Minute, want: "expires in 3h05m"},
		{in: 12 * 24 * time.Hour, want: "expires in 12d"},
	} {
		exp := now.Add(tc.in)
		if tc.zero {
			exp = time.Time{}
		}
		if got := expiryText(exp, now); got != tc.want {
			t.Errorf("expiryText(now%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
