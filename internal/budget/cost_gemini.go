package budget

import "strings"

// geminiPrices are Google's Gemini API (paid tier) list prices for text, in
// USD per million tokens, for prompts up to 200k tokens, matched by
// substring in order (more specific names first). Gemini bills cached
// prompt tokens at the CacheRead rate and thinking tokens as output; it has
// no cache-write charge (CacheWrite is the input rate, never used by the
// meter). Longer prompts cost more on the Pro models: a budget prices them
// at the lower tier.
var geminiPrices = []struct {
	match string
	price Price
}{
	{"gemini-3.1-pro", Price{2, 12, 2, 0.20}},
	{"gemini-3-pro", Price{2, 12, 2, 0.20}},
	{"gemini-3-flash", Price{0.50, 3, 0.50, 0.05}},
	{"gemini-2.5-pro", Price{1.25, 10, 1.25, 0.125}},
	{"gemini-2.5-flash-lite", Price{0.10, 0.40, 0.10, 0.025}},
	{"gemini-2.5-flash", Price{0.30, 2.50, 0.30, 0.075}},
	{"gemini-2.0-flash-lite", Price{0.075, 0.30, 0.075, 0.01875}},
	{"gemini-2.0-flash", Price{0.10, 0.40, 0.10, 0.025}},
	{"gemini-1.5-pro", Price{1.25, 5, 1.25, 0.3125}},
	{"gemini-1.5-flash-8b", Price{0.0375, 0.15, 0.0375, 0.01}},
	{"gemini-1.5-flash", Price{0.075, 0.30, 0.075, 0.01875}},
}

// geminiUnknownPrice is charged for a Gemini model not in the table (a newer
// one, or an image, audio or speech model priced per output medium): the
// highest rate any Gemini model charges for text (Gemini 3 Pro beyond 200k
// prompt tokens), so that a budget errs on the side of stopping early.
var geminiUnknownPrice = Price{4, 18, 4, 0.40}

// geminiPriceOf is the price of a Gemini model by (lower-case) name.
func geminiPriceOf(model string) Price {
	for _, media := range []string{"image", "audio", "tts", "live"} {
		if strings.Contains(model, media) {
			return geminiUnknownPrice
		}
	}
	for _, p := range geminiPrices {
		if strings.Contains(model, p.match) {
			return p.price
		}
	}
	return geminiUnknownPrice
}
