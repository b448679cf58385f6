package budget

import "strings"

// vertexPrices are Google Vertex AI's on-demand prices for Anthropic's
// models, in USD per million tokens, by model (claudeModelKey): input,
// output, 5-minute cache write, cache read. From
// https://cloud.google.com/vertex-ai/generative-ai/pricing ("Anthropic's
// Claude models") and Anthropic's "Pricing" page
// (https://platform.claude.com/docs/en/about-claude/pricing, "Third-party
// platform pricing": from Claude Sonnet 4.5 and Haiku 4.5 on, regional
// endpoints carry a 10% premium over the global endpoint, which is at
// Anthropic's list price; older models keep one price), as published in
// 2025-11 and still so in 2026. They could not be verified from this
// machine (it has no internet): a budget is an estimate, check the
// provider's bill.
var vertexPrices = map[string]providerPrice{
	"claude-opus-4-6":   {Price{5, 25, 6.25, 0.50}, Price{5.50, 27.50, 6.875, 0.55}},
	"claude-opus-4-5":   {Price{5, 25, 6.25, 0.50}, Price{5.50, 27.50, 6.875, 0.55}},
	"claude-opus-4-1":   {Price{15, 75, 18.75, 1.50}, Price{15, 75, 18.75, 1.50}},
	"claude-opus-4":     {Price{15, 75, 18.75, 1.50}, Price{15, 75, 18.75, 1.50}},
	"claude-3-opus":     {Price{15, 75, 18.75, 1.50}, Price{15, 75, 18.75, 1.50}},
	"claude-sonnet-4-6": {Price{3, 15, 3.75, 0.30}, Price{3.30, 16.50, 4.125, 0.33}},
	"claude-sonnet-4-5": {Price{3, 15, 3.75, 0.30}, Price{3.30, 16.50, 4.125, 0.33}},
	"claude-sonnet-4":   {Price{3, 15, 3.75, 0.30}, Price{3, 15, 3.75, 0.30}},
	"claude-3-7-sonnet": {Price{3, 15, 3.75, 0.30}, Price{3, 15, 3.75, 0.30}},
	"claude-3-5-sonnet": {Price{3, 15, 3.75, 0.30}, Price{3, 15, 3.75, 0.30}},
	"claude-haiku-4-5":  {Price{1, 5, 1.25, 0.10}, Price{1.10, 5.50, 1.375, 0.11}},
	"claude-3-5-haiku":  {Price{0.80, 4, 1, 0.08}, Price{0.80, 4, 1, 0.08}},
	"claude-3-haiku":    {Price{0.25, 1.25, 0.30, 0.03}, Price{0.25, 1.25, 0.30, 0.03}},
}

// vertexPriceOf is the price of a Vertex model in a region: "global" at the
// global price, any other region (us-east5, europe-west1, a multi-region)
// at the regional one.
func vertexPriceOf(model, region string) Price {
	return cloudPriceOf(vertexPrices, model, strings.EqualFold(region, "global"))
}
