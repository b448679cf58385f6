package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBudgetCacheNotifySettings(t *testing.T) {
	tests := []struct {
		key, value string
		check      func(Config) bool
		wantErr    string
	}{
		{key: "run.max_cost", value: "2.50", check: func(c Config) bool { return c.Run.MaxCostUSD == 2.5 }},
		{key: "run.max_cost", value: "-1", wantErr: "flag --x: run.max_cost: must be 0 (no limit) or a cost in USD"},
		{key: "run.timeout", value: "45m", check: func(c Config) bool { return c.Run.Timeout == 45*time.Minute }},
		{key: "run.timeout", value: "0", check: func(c Config) bool { return c.Run.Timeout == 0 }},
		{key: "run.timeout", value: "soon", wantErr: `flag --x: run.timeout: "soon" is not a duration; write it like "45m"`},
		{key: "run.timeout", value: "-5m", wantErr: `flag --x: run.timeout: "-5m" is not a duration`},
		{key: "sandbox.caches", value: "npm", check: func(c Config) bool { return reflect.DeepEqual(c.Sandbox.Caches, []string{"npm"}) }},
		{key: "sandbox.caches", value: "maven", wantErr: `flag --x: sandbox.caches: unknown cache "maven"; caches: go, npm, pip`},
		{key: "notify.desktop", value: "true", check: func(c Config) bool { return c.Notify.Desktop }},
		{key: "notify.webhook", value: "https://hooks.example.com/x", check: func(c Config) bool { return c.Notify.Webhook == "https://hooks.example.com/x" }},
		{key: "notify.webhook", value: "hooks.example.com", wantErr: "flag --x: notify.webhook: is not an http(s) URL"},
		{key: "github.api_url", value: "https://ghe.example.com/api/v3", check: func(c Config) bool { return c.GitHub.APIURL == "https://ghe.example.com/api/v3" }},
		{key: "github.api_url", value: "http://ghe.example.com/api/v3", wantErr: "flag --x: github.api_url: GitHub API URL \"http://ghe.example.com/api/v3\": plain http would send your token in the clear"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			r, _ := Loader{}.Load()
			err := r.Set(tt.key, tt.value, "flag --x")
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(r.Config) {
				t.Errorf("Set did not take effect: %+v", r.Config)
			}
		})
	}
}

func TestCacheFlagsAddUp(t *testing.T) {
	r, _ := Loader{}.Load()
	for _, c := range []string{"npm", "go", "npm"} {
		if err := r.Set("sandbox.caches", c, "flag --cache"); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Config.Sandbox.Caches; !reflect.DeepEqual(got, []string{"npm", "go"}) {
		t.Errorf("caches from repeated --cache = %v, want [npm go]", got)
	}
}

func TestBudgetInAFile(t *testing.T) {
	path := write(t, t.TempDir(), "c.toml", "[run]\ntimeout = \"1h\"\nmax_cost = 3\n[notify]\nwebhook = \"ftp://x\"\n")
	_, err := Loader{ProjectPath: path}.Load()
	if err == nil || !strings.Contains(err.Error(), path+":5") || !strings.Contains(err.Error(), "notify.webhook") {
		t.Errorf("a bad webhook: error %v, want one naming %s:5 and the key", err, path)
	}
	path = write(t, t.TempDir(), "c.toml", "[run]\ntimeout = \"1h\"\nmax_cost = 3\n")
	r, err := Loader{ProjectPath: path}.Load()
	if err != nil || r.Config.Run.Timeout != time.Hour || r.Config.Run.MaxCostUSD != 3 {
		t.Errorf("Load = %+v, %v", r.Config.Run, err)
	}
}
