package budget

import "strings"

// providerPrice is one Claude model's on-demand price on a cloud provider:
// Global on the provider's global endpoint (Bedrock's "global." inference
// profiles, Vertex's "global" region), Regional on every other endpoint
// (Bedrock's geographic profiles "us.", "eu.", "apac."... and in-region
// model ids; Vertex's regional endpoints).
type providerPrice struct {
	Global, Regional Price
}

// bedrockPrices are Amazon Bedrock's on-demand prices for Anthropic's
// models, in USD per million tokens, by model (claudeModelKey): input,
// output, 5-minute cache write, cache read. From
// https://aws.amazon.com/bedrock/pricing/ and Anthropic's "Pricing" page
// (https://platform.claude.com/docs/en/about-claude/pricing, "Third-party
// platform pricing": from Claude Sonnet 4.5 and Haiku 4.5 on, Bedrock's and
// Vertex's regional endpoints carry a 10% premium over the global ones,
// which are at Anthropic's list price; older models keep one price), as
// published in 2025-11 and still so in 2026. They could not be verified
// from this machine (it has no internet): a budget is an estimate, check
// the provider's bill.
//
// Sonnet's prompts over 200k tokens cost more (long context): a budget
// prices them at the lower tier.
var bedrockPrices = map[string]providerPrice{
	"claude-opus-4-6":   {Price{5, 25, 6.25, 0.50}, Price{5.50, 27.50, 6.875, 0.55}},
	"claude-opus-4-5":   {Price{5, 25, 6.25, 0.50}, Price{5.50, 27.50, 6.875, 0.55}},
	"claude-opus-4-1":   {Price{15, 75, 18.75, 1.50}, Price{15, 75, 18.75, 1.50}},
	"claude-opus-4":     {Price{15, 75, 18.75, 1.50}, Price{15, 75, 18.75, 1.50}},
	"claude-3-opus":     {Price{15, 75, 18.75, 1.50}, Price{15, 75, 18.75, 1.50}},
	"claude-sonnet-4-6": {Price{3, 15, 3.75, 0.30}, Price{3.30, 16.50, 4.125, 0.33}},
	"claude-sonnet-4-5": {Price{3, 15, 3.75, 0.30}, Price{3.30, 16.50, 4.125, 0.33}},
	"claude-sonnet-4":   {Price{3, 15, 3.75, 0.30}, Price{3, 15, 3.75, 0.30}},
	"claude-3-7-sonnet": {Price{3, 15, 3.75, 0.30}, Price{3, 15, 3.75, 0.30}},
	// Claude 3.5 Sonnet is on Bedrock's extended-access price, twice the
	// list price.
	"claude-3-5-sonnet": {Price{6, 30, 7.50, 0.60}, Price{6, 30, 7.50, 0.60}},
	"claude-haiku-4-5":  {Price{1, 5, 1.25, 0.10}, Price{1.10, 5.50, 1.375, 0.11}},
	"claude-3-5-haiku":  {Price{0.80, 4, 1, 0.08}, Price{0.80, 4, 1, 0.08}},
	"claude-3-haiku":    {Price{0.25, 1.25, 0.30, 0.03}, Price{0.25, 1.25, 0.30, 0.03}},
}

// regionalPremium is what a regional endpoint adds to the global price of
// a model that has both, and is assumed of every Claude model not in a
// table (a newer one: Anthropic's page says the premium applies to Sonnet
// 4.5 "and all future models").
const regionalPremium = 1.10

// bedrockPriceOf is the price of a Bedrock model id: "global." inference
// profiles at the global price, every other id (a geographic profile like
// "us.", "eu." or "apac.", or a model id in one region) at the regional
// one.
func bedrockPriceOf(model string) Price {
	global := strings.HasPrefix(strings.ToLower(model), "global.")
	return cloudPriceOf(bedrockPrices, model, global)
}

// cloudPriceOf looks a model up in a provider's table, on its global or a
// regional endpoint. A model not in it is priced as PriceOf prices it (the
// most expensive price when unknown), plus the regional premium for a
// Claude model on a regional endpoint.
func cloudPriceOf(table map[string]providerPrice, model string, global bool) Price {
	if p, ok := table[claudeModelKey(model)]; ok {
		if global {
			return p.Global
		}
		return p.Regional
	}
	p := PriceOf(model)
	if !global && strings.Contains(strings.ToLower(model), "claude") {
		p = p.times(regionalPremium)
	}
	return p
}

func (p Price) times(f float64) Price {
	return Price{p.Input * f, p.Output * f, p.CacheWrite * f, p.CacheRead * f}
}

// claudeModelKey reduces a provider's id of a Claude model to the
// model's name without date or version: "us.anthropic.claude-sonnet-4-5-
// 20250929-v1:0" (Bedrock), "claude-sonnet-4-5@20250929" (Vertex) and
// "claude-sonnet-4-5-20250929" (Anthropic) are all "claude-sonnet-4-5".
// A name that is not a Claude model's gives "".
func claudeModelKey(model string) string {
	m := strings.ToLower(strings.TrimSpace(model))
	if _, after, ok := strings.Cut(m, "anthropic."); ok {
		m = after // Bedrock: [geo.]anthropic.<model>
	}
	m, _, _ = strings.Cut(m, "@") // Vertex: <model>@<date>
	m, _, _ = strings.Cut(m, ":") // Bedrock: <model>-v1:0
	if i := strings.LastIndex(m, "-v"); i > 0 && allDigits(m[i+2:]) {
		m = m[:i]
	}
	if i := strings.LastIndexByte(m, '-'); i > 0 && len(m)-i-1 == 8 && allDigits(m[i+1:]) {
		m = m[:i] // a date
	}
	m = strings.TrimSuffix(m, "-latest")
	if !strings.HasPrefix(m, "claude-") {
		return ""
	}
	return m
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
