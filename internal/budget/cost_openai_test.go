package budget

import "testing"

func TestOpenAIPrices(t *testing.T) {
	tests := []struct {
		model string
		want  Price
	}{
		{"gpt-5.5", Price{5, 30, 5, 0.50}},
		{"GPT-5.5-2026-04-23", Price{5, 30, 5, 0.50}},
		{"openai/gpt-5.5", Price{5, 30, 5, 0.50}},
		{"gpt-5.5-pro", Price{30, 180, 30, 30}},
		{"gpt-5.4-mini", Price{0.75, 4.50, 0.75, 0.075}},
		{"gpt-5.1-codex-max", Price{1.25, 10, 1.25, 0.125}},
		{"gpt-5.1-codex-mini", Price{0.25, 2, 0.25, 0.025}},
		{"gpt-5-codex", Price{1.25, 10, 1.25, 0.125}},
		{"gpt-5-2025-08-07", Price{1.25, 10, 1.25, 0.125}},
		{"gpt-5-mini", Price{0.25, 2, 0.25, 0.025}},
		{"gpt-4o-2024-08-06", Price{2.50, 10, 2.50, 1.25}},
		{"gpt-4o-mini-2024-07-18", Price{0.15, 0.60, 0.15, 0.075}},
		{"o3", Price{2, 8, 2, 0.50}},
		{"o4-mini-2025-04-16", Price{1.10, 4.40, 1.10, 0.275}},
		// Newer than the table, or a name that only starts like a known
		// one: the most expensive, never the older model's price.
		{"gpt-5.6-sol", openAIUnknownPrice},
		{"gpt-6-luna", openAIUnknownPrice},
		{"gpt-50", openAIUnknownPrice},
		{"o5", openAIUnknownPrice},
		{"codex-auto-review", openAIUnknownPrice},
	}
	for _, tt := range tests {
		if got := PriceOf(tt.model); got != tt.want {
			t.Errorf("PriceOf(%q) = %+v, want %+v", tt.model, got, tt.want)
		}
	}
	for _, p := range openAIPrices {
		if p.price.Input > openAIUnknownPrice.Input || p.price.Output > openAIUnknownPrice.Output || p.price.CacheRead > openAIUnknownPrice.CacheRead {
			t.Errorf("%s costs more than an unknown OpenAI model", p.name)
		}
		if got := PriceOf(p.name); got != p.price {
			t.Errorf("%s is shadowed by an earlier row: priced %+v", p.name, got)
		}
	}
	// Other providers are not affected.
	if PriceOf("claude-opus-4-1") != (Price{15, 75, 18.75, 1.50}) || PriceOf("ollama/llama3") != unknownPrice {
		t.Errorf("a non-OpenAI model's price changed")
	}
	// 1M input of which 400k cached, 100k output, on GPT-5.5.
	got := PriceOf("gpt-5.5").Cost(Usage{Input: 600_000, CacheRead: 400_000, Output: 100_000})
	if want := 3 + 0.2 + 3.0; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("cost = %v, want %v", got, want)
	}
}
