package budget

import (
	"math"
	"strings"
	"testing"
)

func TestClaudeModelKey(t *testing.T) {
	tests := []struct{ id, want string }{
		{"us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"},
		{"global.anthropic.claude-opus-4-5-20251101-v1:0", "claude-opus-4-5"},
		{"anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"},
		{"apac.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"},
		{"eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"},
		{"us.anthropic.claude-opus-5-5", "claude-opus-5-5"},
		{"claude-sonnet-4-5@20250929", "claude-sonnet-4-5"},
		{"claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"},
		{"claude-opus-4@20250514", "claude-opus-4"},
		{"claude-opus-4-6", "claude-opus-4-6"},
		{"claude-sonnet-4-20250514", "claude-sonnet-4"},
		{"claude-3-5-haiku-latest", "claude-3-5-haiku"},
		{"Claude-Haiku-4-5", "claude-haiku-4-5"},
		{"gemini-2.5-pro", ""},
		{"meta.llama3-70b-instruct-v1:0", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := claudeModelKey(tt.id); got != tt.want {
			t.Errorf("claudeModelKey(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestProviderPriceOf(t *testing.T) {
	var (
		sonnet         = Price{3, 15, 3.75, 0.30}
		sonnetRegional = Price{3.30, 16.50, 4.125, 0.33}
		haiku          = Price{1, 5, 1.25, 0.10}
		haikuRegional  = Price{1.10, 5.50, 1.375, 0.11}
		opus45         = Price{5, 25, 6.25, 0.50}
		opus45Regional = Price{5.50, 27.50, 6.875, 0.55}
		opus41         = Price{15, 75, 18.75, 1.50}
	)
	tests := []struct {
		provider, model, region string
		want                    Price
	}{
		// Anthropic: the list price, wherever the run is.
		{"anthropic", "claude-sonnet-4-5-20250929", "", sonnet},
		{"", "claude-haiku-4-5", "us-east-1", haiku},
		{"anthropic", "gpt-5", "", PriceOf("gpt-5")},

		// Bedrock: global profiles at list, geographic profiles and
		// in-region ids with the premium, for the models that carry one.
		{"bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1", sonnet},
		{"bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us-east-1", sonnetRegional},
		{"bedrock", "eu.anthropic.claude-sonnet-4-5-20250929-v1:0", "eu-west-1", sonnetRegional},
		{"bedrock", "apac.anthropic.claude-sonnet-4-5-20250929-v1:0", "ap-northeast-1", sonnetRegional},
		{"bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", "us-west-2", sonnetRegional},
		{"bedrock", "GLOBAL.anthropic.claude-haiku-4-5-20251001-v1:0", "", haiku},
		{"bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0", "", haikuRegional},
		{"bedrock", "global.anthropic.claude-opus-4-5-20251101-v1:0", "", opus45},
		{"bedrock", "us.anthropic.claude-opus-4-5-20251101-v1:0", "", opus45Regional},
		{"bedrock", "us.anthropic.claude-opus-4-1-20250805-v1:0", "", opus41},
		{"bedrock", "us.anthropic.claude-sonnet-4-20250514-v1:0", "", sonnet},
		{"bedrock", "us.anthropic.claude-3-7-sonnet-20250219-v1:0", "", sonnet},
		{"bedrock", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "", Price{6, 30, 7.50, 0.60}},
		{"bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", "", Price{0.80, 4, 1, 0.08}},
		{"bedrock", "anthropic.claude-3-haiku-20240307-v1:0", "", Price{0.25, 1.25, 0.30, 0.03}},
		// A model no table knows: PriceOf's price (here "opus", the
		// dearest), plus the premium off the global endpoint.
		{"bedrock", "global.anthropic.claude-opus-5-5", "", PriceOf("claude-opus-5-5")},
		{"bedrock", "us.anthropic.claude-opus-5-5", "", PriceOf("claude-opus-5-5").times(1.1)},
		{"bedrock", "us.anthropic.claude-nova-9", "", unknownPrice.times(1.1)},
		{"bedrock", "meta.llama3-70b-instruct-v1:0", "", unknownPrice},

		// Vertex: region "global" at list, regional endpoints with the
		// premium for the models that carry one.
		{"vertex", "claude-sonnet-4-5@20250929", "global", sonnet},
		{"vertex", "claude-sonnet-4-5@20250929", "us-east5", sonnetRegional},
		{"vertex", "claude-sonnet-4-5@20250929", "europe-west1", sonnetRegional},
		{"vertex", "claude-sonnet-4-5-20250929", "Global", sonnet},
		{"vertex", "claude-haiku-4-5@20251001", "us-east5", haikuRegional},
		{"vertex", "claude-opus-4-5@20251101", "global", opus45},
		{"vertex", "claude-opus-4-6", "asia-southeast1", opus45Regional},
		{"vertex", "claude-opus-4-1@20250805", "us-east5", opus41},
		{"vertex", "claude-3-5-sonnet-v2@20241022", "us-east5", sonnet},
		{"vertex", "claude-sonnet-4@20250514", "us-east5", sonnet},
		{"vertex", "claude-opus-5-5", "global", PriceOf("claude-opus-5-5")},
		{"vertex", "claude-opus-5-5", "us-east5", PriceOf("claude-opus-5-5").times(1.1)},
		// No region given: a regional endpoint, the dearer.
		{"vertex", "claude-haiku-4-5@20251001", "", haikuRegional},
	}
	for _, tt := range tests {
		got := ProviderPriceOf(tt.provider, tt.model, tt.region)
		if !near(got, tt.want) {
			t.Errorf("ProviderPriceOf(%q, %q, %q) = %+v, want %+v", tt.provider, tt.model, tt.region, got, tt.want)
		}
	}
}

// The tables hold together: the regional price is the global one or 10%
// above it, never below; cache writes are 1.25x and reads 0.1x of input.
func TestProviderTables(t *testing.T) {
	for name, table := range map[string]map[string]providerPrice{"bedrock": bedrockPrices, "vertex": vertexPrices} {
		for model, p := range table {
			if claudeModelKey(model) != model {
				t.Errorf("%s: %s is not a model key", name, model)
			}
			if !near(p.Regional, p.Global) && !near(p.Regional, p.Global.times(1.1)) {
				t.Errorf("%s %s: regional %+v is neither global %+v nor 10%% above it", name, model, p.Regional, p.Global)
			}
			for _, q := range []Price{p.Global, p.Regional} {
				// Claude 3 Haiku's cache prices are rounded ($0.30, $0.03).
				if model != "claude-3-haiku" && (!approx(q.CacheWrite, q.Input*1.25) || !approx(q.CacheRead, q.Input*0.1)) {
					t.Errorf("%s %s: cache prices %+v are not 1.25x and 0.1x of input", name, model, q)
				}
			}
			// At the global endpoint, a model current at Anthropic costs
			// Anthropic's list price.
			if list := PriceOf(model); name == "vertex" && !near(p.Global, list) {
				t.Errorf("vertex %s: global %+v, Anthropic's list %+v", model, p.Global, list)
			}
		}
	}
}

func TestCheckProvider(t *testing.T) {
	for _, ok := range []string{"", "anthropic", "bedrock", "vertex"} {
		if err := CheckProvider(ok); err != nil {
			t.Errorf("CheckProvider(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"aws", "Bedrock", "openai", " vertex"} {
		if err := CheckProvider(bad); err == nil || !strings.Contains(err.Error(), "unknown model provider") {
			t.Errorf("CheckProvider(%q) = %v, want an error", bad, err)
		}
	}
}

// A million tokens of each kind on Sonnet 4.5 through a US profile costs
// 10% more than through the global one.
func TestRegionalCost(t *testing.T) {
	u := Usage{Input: 1_000_000, Output: 1_000_000, CacheCreation: 1_000_000, CacheRead: 1_000_000}
	g := ProviderPriceOf("bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "").Cost(u)
	r := ProviderPriceOf("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "").Cost(u)
	if !approx(g, 3+15+3.75+0.30) || !approx(r, g*1.1) {
		t.Errorf("global %v, regional %v", g, r)
	}
}

func near(a, b Price) bool {
	return approx(a.Input, b.Input) && approx(a.Output, b.Output) && approx(a.CacheWrite, b.CacheWrite) && approx(a.CacheRead, b.CacheRead)
}

func approx(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
