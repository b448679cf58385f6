package egress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/budget"
)

// The OpenAI Chat Completions API (POST /v1/chat/completions), as opencode
// and other OpenAI-compatible clients speak it. A streamed response is a
// series of unnamed SSE events, each `data: {chat.completion.chunk}`, ending
// with `data: [DONE]`; the usage comes in one chunk near the end (with empty
// choices), and only when the request set stream_options.include_usage. A
// non-streaming response is one chat.completion object with its usage.

// chatCompletionsUsage meters Chat Completions responses. Its events are
// unnamed; chatUsage skips the content chunks without decoding them.
var chatCompletionsUsage = usageFormat{
	event:   func([]byte) bool { return false },
	request: chatRequestWithUsage,
	data: func(rm *responseMeter, data []byte) {
		if model, u, ok := chatUsage(data); ok {
			rm.observe(model, u)
		}
	},
}

// chatUsageReport is the part of a chunk or a whole response that says what
// it cost.
type chatUsageReport struct {
	Model string `json:"model"`
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"` // cached ones included
		CompletionTokens    int `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

// chatUsage reads one SSE data payload of a streamed Chat Completions
// response, or a whole JSON response: the model it names and, when it
// carries usage, the tokens in budget terms (Input without the cached
// prompt tokens, which are CacheRead; Output with any reasoning tokens,
// which OpenAI counts in completion_tokens). ok is false when the payload
// reports no usage (most chunks, `[DONE]`, anything not JSON).
func chatUsage(data []byte) (model string, u budget.Usage, ok bool) {
	// Most chunks are content deltas, and the usage chunk names the model
	// too: only decode what can hold counts.
	if !bytes.Contains(data, []byte(`"prompt_tokens"`)) && !bytes.Contains(data, []byte(`"completion_tokens"`)) {
		return "", budget.Usage{}, false
	}
	var r chatUsageReport
	if json.Unmarshal(data, &r) != nil || r.Usage == nil {
		return "", budget.Usage{}, false
	}
	cached := 0
	if d := r.Usage.PromptTokensDetails; d != nil {
		cached = d.CachedTokens
	}
	// A hostile or broken upstream cannot make a count negative.
	prompt := max(r.Usage.PromptTokens, 0)
	cached = min(max(cached, 0), prompt)
	return r.Model, budget.Usage{
		Input:     prompt - cached,
		Output:    max(r.Usage.CompletionTokens, 0),
		CacheRead: cached,
	}, true
}

// errChatBody is returned by chatRequestWithUsage for a request the proxy
// cannot meter.
var errChatBody = errors.New("chat completions request body is not a JSON object")

// chatRequestWithUsage returns a Chat Completions request body that makes a
// streamed response report its usage: stream_options.include_usage set to
// true, whatever the agent asked. Without it the API streams no usage at
// all, and an agent could spend without the meter seeing a token. Other
// fields pass through as sent; a request that does not stream is returned
// unchanged (its response always carries usage). A body that is not a JSON
// object is an error: the caller refuses it rather than forward a model
// request it cannot meter.
func chatRequestWithUsage(body []byte) ([]byte, error) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return nil, errChatBody
	}
	var stream bool
	if raw, ok := req["stream"]; ok {
		if err := json.Unmarshal(raw, &stream); err != nil {
			return nil, fmt.Errorf("%w: stream is not a boolean", errChatBody)
		}
	}
	if !stream {
		// Re-encoded all the same: a body with duplicate keys reaches
		// the API exactly as the proxy read it.
		return encodeJSON(req)
	}
	opts := map[string]json.RawMessage{}
	if raw, ok := req["stream_options"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &opts); err != nil || opts == nil {
			return nil, fmt.Errorf("%w: stream_options is not an object", errChatBody)
		}
	}
	opts["include_usage"] = json.RawMessage("true")
	enc, err := encodeJSON(opts)
	if err != nil {
		return nil, err
	}
	req["stream_options"] = enc
	return encodeJSON(req)
}

// encodeJSON is json.Marshal without HTML escaping, so strings in the
// agent's request reach the API byte for byte.
func encodeJSON(v map[string]json.RawMessage) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// maxModelRequest bounds a model request the proxy reads whole to rewrite:
// a conversation with its tool schemas is typically well under 1 MiB.
const maxModelRequest = 32 << 20

// rewriteRequestBody replaces r's body with rewrite's version of it. A body
// the proxy cannot read plainly (compressed, or over maxModelRequest) is an
// error, as is one rewrite refuses.
func rewriteRequestBody(r *http.Request, rewrite func([]byte) ([]byte, error)) error {
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return fmt.Errorf("model request body has Content-Encoding %q", ce)
	}
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, maxModelRequest+1))
		r.Body.Close()
		if err != nil {
			return fmt.Errorf("read model request body: %w", err)
		}
		if len(body) > maxModelRequest {
			return fmt.Errorf("model request body is larger than %d MiB", maxModelRequest>>20)
		}
	}
	out, err := rewrite(body)
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(out))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(out)), nil }
	r.ContentLength = int64(len(out))
	r.Header.Set("Content-Length", strconv.Itoa(len(out)))
	r.Header.Del("Content-Encoding")
	r.TransferEncoding = nil
	return nil
}
