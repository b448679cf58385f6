package agent

import (
	"errors"
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
		{"bedrock", map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_API_KEY": "k"}, "", "", "", ErrCloudCredentials},
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
