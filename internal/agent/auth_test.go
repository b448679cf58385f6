package agent

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestAPIAuth(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		wantHeader string
		wantValue  string
		wantEnv    string
		wantErr    error
	}{
		{"api key", map[string]string{"ANTHROPIC_API_KEY": "sk-ant-real"}, "X-Api-Key", "sk-ant-real", "ANTHROPIC_API_KEY=" + PlaceholderAPIKey, nil},
		{"oauth", map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": "tok"}, "Authorization", "Bearer tok", "CLAUDE_CODE_OAUTH_TOKEN=" + PlaceholderOAuthToken, nil},
		{"auth token wins", map[string]string{"ANTHROPIC_AUTH_TOKEN": "gw", "ANTHROPIC_API_KEY": "k"}, "Authorization", "Bearer gw", "ANTHROPIC_AUTH_TOKEN=" + PlaceholderOAuthToken, nil},
		{"none", map[string]string{}, "", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(n string) (string, bool) { v, ok := tt.env[n]; return v, ok }
			got, err := Claude{}.API(lookup)
			if tt.wantHeader == "" {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Headers[tt.wantHeader] != tt.wantValue || len(got.Env) != 1 || got.Env[0] != tt.wantEnv {
				t.Fatalf("got %+v", got)
			}
			if strings.Contains(strings.Join(got.Env, " "), got.Secret) {
				t.Fatal("the secret is in the agent's environment")
			}
		})
	}
}

func TestClaudeCloudAPI(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		wantErr   string
		upstream  string
		wantEnv   []string
		wantRoute string // one route's path that must be there
		cloud     Cloud
	}{
		{
			name:      "bedrock",
			env:       map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "real-secret", "ANTHROPIC_API_KEY": "k"},
			upstream:  "https://bedrock-runtime.eu-west-1.amazonaws.com",
			wantEnv:   []string{"CLAUDE_CODE_USE_BEDROCK=1", "ANTHROPIC_BEDROCK_BASE_URL=" + APIBaseURL, "AWS_REGION=eu-west-1", "CLAUDE_CODE_SKIP_BEDROCK_AUTH=1"},
			wantRoute: "/model/*/invoke-with-response-stream",
			cloud:     Cloud{Provider: "bedrock", Region: "eu-west-1"},
		},
		{
			name:     "bedrock default region",
			env:      map[string]string{"CLAUDE_CODE_USE_BEDROCK": "true", "AWS_DEFAULT_REGION": "us-west-2"},
			upstream: "https://bedrock-runtime.us-west-2.amazonaws.com",
			wantEnv:  []string{"AWS_REGION=us-west-2"},
			cloud:    Cloud{Provider: "bedrock", Region: "us-west-2"},
		},
		{name: "bedrock without region", env: map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1"}, wantErr: "AWS_REGION is not"},
		{name: "bedrock bad region", env: map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1.evil.example"}, wantErr: "not an AWS region"},
		{
			name:      "vertex",
			env:       map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "us-east5", "ANTHROPIC_VERTEX_PROJECT_ID": "my-project-1"},
			upstream:  "https://us-east5-aiplatform.googleapis.com",
			wantEnv:   []string{"CLAUDE_CODE_USE_VERTEX=1", "ANTHROPIC_VERTEX_BASE_URL=" + APIBaseURL + "/v1", "CLOUD_ML_REGION=us-east5", "ANTHROPIC_VERTEX_PROJECT_ID=my-project-1", "CLAUDE_CODE_SKIP_VERTEX_AUTH=1"},
			wantRoute: "/v1/projects/my-project-1/locations/us-east5/publishers/anthropic/models/*:streamRawPredict",
			cloud:     Cloud{Provider: "vertex", Region: "us-east5", Project: "my-project-1"},
		},
		{
			name:     "vertex global",
			env:      map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "global", "ANTHROPIC_VERTEX_PROJECT_ID": "my-project-1"},
			upstream: "https://aiplatform.googleapis.com",
			cloud:    Cloud{Provider: "vertex", Region: "global", Project: "my-project-1"},
		},
		{name: "vertex without project", env: map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "global"}, wantErr: "ANTHROPIC_VERTEX_PROJECT_ID is not"},
		{name: "vertex without region", env: map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "ANTHROPIC_VERTEX_PROJECT_ID": "my-project-1"}, wantErr: "CLOUD_ML_REGION is not"},
		{name: "vertex project with a slash", env: map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "global", "ANTHROPIC_VERTEX_PROJECT_ID": "p/../../x"}, wantErr: "not a Google Cloud project"},
		{name: "vertex bad region", env: map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "CLOUD_ML_REGION": "x.evil.example/", "ANTHROPIC_VERTEX_PROJECT_ID": "my-project-1"}, wantErr: "not a Vertex AI location"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(n string) (string, bool) { v, ok := tt.env[n]; return v, ok }
			got, err := Claude{}.API(lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Upstream != tt.upstream || got.Cloud == nil || *got.Cloud != tt.cloud {
				t.Errorf("upstream %s, cloud %+v", got.Upstream, got.Cloud)
			}
			if len(got.Headers) != 0 || got.Secret != "" {
				t.Errorf("a cloud provider's credential is not a header: %+v", got)
			}
			for _, e := range tt.wantEnv {
				if !slices.Contains(got.Env, e) {
					t.Errorf("env %q missing from %q", e, got.Env)
				}
			}
			for _, e := range got.Env {
				if strings.Contains(e, "real-secret") || strings.HasPrefix(e, "AWS_SECRET") || strings.HasPrefix(e, "ANTHROPIC_API_KEY") {
					t.Errorf("the agent gets %q", e)
				}
			}
			if tt.wantRoute != "" && !slices.ContainsFunc(got.Routes, func(r Route) bool { return r.Path == tt.wantRoute && r.Metered }) {
				t.Errorf("no metered route %s in %+v", tt.wantRoute, got.Routes)
			}
		})
	}
}
