package budget

import "testing"

func TestGeminiPrices(t *testing.T) {
	tests := []struct {
		model string
		want  Price
	}{
		{"gemini-2.5-flash", Price{0.30, 2.50, 0.30, 0.075}},
		{"models/gemini-2.5-flash-preview-09-2025", Price{0.30, 2.50, 0.30, 0.075}},
		{"gemini-2.5-flash-lite", Price{0.10, 0.40, 0.10, 0.025}},
		{"gemini-2.5-pro", Price{1.25, 10, 1.25, 0.125}},
		{"Gemini-3-Pro-Preview", Price{2, 12, 2, 0.20}},
		{"gemini-3.1-pro-preview-customtools", Price{2, 12, 2, 0.20}},
		{"gemini-3-flash-preview", Price{0.50, 3, 0.50, 0.05}},
		{"gemini-2.0-flash-001", Price{0.10, 0.40, 0.10, 0.025}},
		// Unknown, or priced per medium: the most expensive.
		{"gemini-3.5-flash-lite", geminiUnknownPrice},
		{"gemini-9-ultra", geminiUnknownPrice},
		{"gemini-2.5-flash-image", geminiUnknownPrice},
		{"gemini-2.5-flash-preview-tts", geminiUnknownPrice},
	}
	for _, tt := range tests {
		if got := PriceOf(tt.model); got != tt.want {
			t.Errorf("PriceOf(%q) = %+v, want %+v", tt.model, got, tt.want)
		}
	}
	for _, p := range geminiPrices {
		if p.price.Input > geminiUnknownPrice.Input || p.price.Output > geminiUnknownPrice.Output || p.price.CacheRead > geminiUnknownPrice.CacheRead {
			t.Errorf("%s costs more than an unknown Gemini model", p.match)
		}
	}
	// Anthropic's models are not affected.
	if PriceOf("claude-sonnet-4-5") != (Price{3, 15, 3.75, 0.30}) {
		t.Errorf("sonnet's price changed")
	}
	// 1M input of which 400k cached, 100k output, on 2.5 Flash.
	got := PriceOf("gemini-2.5-flash").Cost(Usage{Input: 600_000, CacheRead: 400_000, Output: 100_000})
	if want := 0.18 + 0.03 + 0.25; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("cost = %v, want %v", got, want)
	}
}
