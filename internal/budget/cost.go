package budget

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Price is what a model charges, in USD per million tokens.
type Price struct {
	Input, Output, CacheWrite, CacheRead float64
}

// prices are Anthropic's list prices, matched by substring of the model
// name in order, so that dated ids ("claude-sonnet-4-5-20250929") and
// provider ids ("us.anthropic.claude-opus-4-1-v1:0") match too. The first
// match wins: more specific names come first.
var prices = []struct {
	match string
	price Price
}{
	{"opus-4-5", Price{5, 25, 6.25, 0.50}},
	{"opus-4-6", Price{5, 25, 6.25, 0.50}},
	{"opus", Price{15, 75, 18.75, 1.50}},
	{"sonnet", Price{3, 15, 3.75, 0.30}},
	{"haiku-4", Price{1, 5, 1.25, 0.10}},
	{"3-5-haiku", Price{0.80, 4, 1, 0.08}},
	{"haiku", Price{0.25, 1.25, 0.30, 0.03}},
}

// unknownPrice is charged for a model not in the table: the most expensive
// one, so that a budget errs on the side of stopping early.
var unknownPrice = Price{15, 75, 18.75, 1.50}

// PriceOf is the price of a model by name.
func PriceOf(model string) Price {
	model = strings.ToLower(model)
	if strings.Contains(model, "gemini") {
		return geminiPriceOf(model)
	}
	if isOpenAIModel(model) {
		return openAIPriceOf(model)
	}
	for _, p := range prices {
		if strings.Contains(model, p.match) {
			return p.price
		}
	}
	return unknownPrice
}

// The providers a model is bought from, as ProviderPriceOf takes them.
const (
	ProviderAnthropic = "anthropic"
	ProviderBedrock   = "bedrock"
	ProviderVertex    = "vertex"
)

// CheckProvider refuses a provider ProviderPriceOf does not know; "" is
// Anthropic.
func CheckProvider(provider string) error {
	switch provider {
	case "", ProviderAnthropic, ProviderBedrock, ProviderVertex:
		return nil
	}
	return fmt.Errorf("unknown model provider %q: use %s, %s or %s", provider, ProviderAnthropic, ProviderBedrock, ProviderVertex)
}

// ProviderPriceOf is the price of a model bought from a provider: Anthropic
// (and, as PriceOf, any other API's list price) for "anthropic" or "", or a
// Claude model on Amazon Bedrock (by its model id or inference profile:
// "global." ones at the global price, the others at the regional one) or on
// Google Vertex AI in a region ("global", or a regional endpoint). The
// region matters only for Vertex: a Bedrock id says its own. A model a
// provider's table does not know is priced as PriceOf prices it.
func ProviderPriceOf(provider, model, region string) Price {
	switch provider {
	case ProviderBedrock:
		return bedrockPriceOf(model)
	case ProviderVertex:
		return vertexPriceOf(model, region)
	}
	return PriceOf(model)
}

// Usage is the token count of one model response.
type Usage struct {
	Input         int `json:"input_tokens"`
	Output        int `json:"output_tokens"`
	CacheCreation int `json:"cache_creation_input_tokens"`
	CacheRead     int `json:"cache_read_input_tokens"`
}

// Cost of u at price p, in USD.
func (p Price) Cost(u Usage) float64 {
	return (float64(u.Input)*p.Input + float64(u.Output)*p.Output +
		float64(u.CacheCreation)*p.CacheWrite + float64(u.CacheRead)*p.CacheRead) / 1e6
}

// Meter estimates a run's running cost from its stream-json transcript:
// every assistant message's usage times its model's list price. Claude Code
// writes one assistant line per content block of a message, each repeating
// the message's usage, so a message counts once (with its latest usage).
//
// It undercounts what Claude Code itself reports as total_cost_usd at the
// end: side requests (titles, summaries, sub-agents' own calls) never appear
// in the main transcript. Once a result line is seen, its total_cost_usd
// replaces the estimate.
type Meter struct {
	messages map[string]float64 // message id -> cost
	order    int                // lines without an id so far
	final    float64
	hasFinal bool
}

// AddLine folds one transcript line into the estimate; lines that are not
// assistant messages or results are ignored.
func (m *Meter) AddLine(line []byte) {
	var l struct {
		Type    string  `json:"type"`
		CostUSD float64 `json:"total_cost_usd"`
		Message struct {
			ID    string `json:"id"`
			Model string `json:"model"`
			Usage *Usage `json:"usage"`
		} `json:"message"`
	}
	if json.Unmarshal(line, &l) != nil {
		return
	}
	switch l.Type {
	case "result":
		m.final, m.hasFinal = l.CostUSD, true
	case "assistant":
		if l.Message.Usage == nil {
			return
		}
		if m.messages == nil {
			m.messages = map[string]float64{}
		}
		id := l.Message.ID
		if id == "" {
			// No id to de-duplicate by: count the line on its own.
			m.order++
			id = "line " + strconv.Itoa(m.order)
		}
		m.messages[id] = PriceOf(l.Message.Model).Cost(*l.Message.Usage)
	}
}

// CostUSD is the estimate so far.
func (m *Meter) CostUSD() float64 {
	if m.hasFinal {
		return m.final
	}
	var sum float64
	for _, c := range m.messages {
		sum += c
	}
	return sum
}
