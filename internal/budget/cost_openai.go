package budget

import "strings"

// openAIPrices are OpenAI's API list prices (standard tier), in USD per
// million tokens. A row matches a model named exactly so, or so followed by
// "-" and anything (a dated id "gpt-4o-2024-08-06", a variant
// "gpt-5.1-codex-max"); the first match wins, so more specific names come
// first. Matching by name prefix, not substring, keeps a newer model
// ("gpt-5.6-sol") from passing for an older, cheaper one ("gpt-5").
// OpenAI bills cached input at the CacheRead rate (input_tokens includes
// the cached tokens; the meter counts them apart) and reasoning tokens as
// output; there is no cache-write charge (CacheWrite is the input rate,
// never used). The pro models have no cache discount. Prompts beyond 272k
// tokens cost more on GPT-5.4 and 5.5: a budget prices them at the lower
// tier.
var openAIPrices = []struct {
	name  string
	price Price
}{
	{"gpt-5.5-pro", Price{30, 180, 30, 30}},
	{"gpt-5.5", Price{5, 30, 5, 0.50}},
	{"gpt-5.4-pro", Price{30, 180, 30, 30}},
	{"gpt-5.4-mini", Price{0.75, 4.50, 0.75, 0.075}},
	{"gpt-5.4-nano", Price{0.20, 1.25, 0.20, 0.02}},
	{"gpt-5.4", Price{2.50, 15, 2.50, 0.25}},
	{"gpt-5.2", Price{1.75, 14, 1.75, 0.175}},
	{"gpt-5.1-codex-mini", Price{0.25, 2, 0.25, 0.025}},
	{"gpt-5.1", Price{1.25, 10, 1.25, 0.125}},
	{"gpt-5-pro", Price{15, 120, 15, 15}},
	{"gpt-5-mini", Price{0.25, 2, 0.25, 0.025}},
	{"gpt-5-nano", Price{0.05, 0.40, 0.05, 0.005}},
	{"gpt-5", Price{1.25, 10, 1.25, 0.125}},
	{"codex-mini-latest", Price{1.50, 6, 1.50, 0.375}},
	{"gpt-4.1-mini", Price{0.40, 1.60, 0.40, 0.10}},
	{"gpt-4.1-nano", Price{0.10, 0.40, 0.10, 0.025}},
	{"gpt-4.1", Price{2, 8, 2, 0.50}},
	{"gpt-4o-mini", Price{0.15, 0.60, 0.15, 0.075}},
	{"gpt-4o", Price{2.50, 10, 2.50, 1.25}},
	{"o4-mini", Price{1.10, 4.40, 1.10, 0.275}},
	{"o3-pro", Price{20, 80, 20, 20}},
	{"o3-mini", Price{1.10, 4.40, 1.10, 0.55}},
	{"o3", Price{2, 8, 2, 0.50}},
	{"o1-pro", Price{150, 600, 150, 150}},
	{"o1-mini", Price{1.10, 4.40, 1.10, 0.55}},
	{"o1", Price{15, 60, 15, 7.50}},
}

// openAIUnknownPrice is charged for an OpenAI model not in the table (a
// newer one): the most expensive in it (o1-pro), so that a budget errs on
// the side of stopping early. Add a row when a model's price is published.
var openAIUnknownPrice = Price{150, 600, 150, 150}

// isOpenAIModel reports whether a (lower-case) model name is OpenAI's: the
// GPT, o-series and Codex families, with or without an "openai/" prefix.
func isOpenAIModel(model string) bool {
	model = strings.TrimPrefix(model, "openai/")
	switch {
	case strings.HasPrefix(model, "gpt-"), strings.HasPrefix(model, "chatgpt-"),
		strings.HasPrefix(model, "codex-"):
		return true
	case len(model) >= 2 && model[0] == 'o' && model[1] >= '1' && model[1] <= '9':
		return true
	}
	return false
}

// openAIPriceOf is the price of an OpenAI model by (lower-case) name.
func openAIPriceOf(model string) Price {
	model = strings.TrimPrefix(model, "openai/")
	for _, p := range openAIPrices {
		if model == p.name || strings.HasPrefix(model, p.name+"-") {
			return p.price
		}
	}
	return openAIUnknownPrice
}
