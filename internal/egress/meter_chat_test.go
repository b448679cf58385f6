package egress

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/budget"
)

func TestChatUsage(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		wantModel string
		want      budget.Usage
		wantOK    bool
	}{
		{
			name:      "the usage chunk of a stream",
			data:      `{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4.1-2025-04-14","choices":[],"usage":{"prompt_tokens":8529,"completion_tokens":33,"total_tokens":8562,"prompt_tokens_details":{"cached_tokens":8448},"completion_tokens_details":{"reasoning_tokens":0}}}`,
			wantModel: "gpt-4.1-2025-04-14",
			want:      budget.Usage{Input: 81, Output: 33, CacheRead: 8448},
			wantOK:    true,
		},
		{
			name:      "a whole JSON response",
			data:      `{"id":"c","object":"chat.completion","model":"gpt-4.1-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}`,
			wantModel: "gpt-4.1-mini",
			want:      budget.Usage{Input: 12, Output: 3},
			wantOK:    true,
		},
		{
			name: "a content chunk with usage null",
			data: `{"id":"c","object":"chat.completion.chunk","model":"gpt-4.1","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}`,
		},
		{
			name: "a content chunk quoting the usage keys",
			data: `{"id":"c","model":"gpt-4.1","choices":[{"index":0,"delta":{"content":"\"prompt_tokens\": 5"}}]}`,
		},
		{name: "the end of the stream", data: `[DONE]`},
		{name: "not JSON", data: `{"usage":{"prompt_tokens":`},
		{
			name:      "negative and oversized counts are clamped",
			data:      `{"model":"gpt-4.1","usage":{"prompt_tokens":100,"completion_tokens":-5,"prompt_tokens_details":{"cached_tokens":500}}}`,
			wantModel: "gpt-4.1",
			want:      budget.Usage{Input: 0, Output: 0, CacheRead: 100},
			wantOK:    true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, u, ok := chatUsage([]byte(tt.data))
			if model != tt.wantModel || u != tt.want || ok != tt.wantOK {
				t.Errorf("chatUsage = %q, %+v, %v; want %q, %+v, %v", model, u, ok, tt.wantModel, tt.want, tt.wantOK)
			}
		})
	}
}

func TestChatRequestWithUsage(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    string // the body sent on, compared as JSON
		wantErr bool
	}{
		{
			name: "a stream without stream_options gets them",
			body: `{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"<b>&</b>"}]}`,
			want: `{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"<b>&</b>"}]}`,
		},
		{
			name: "an agent turning usage off is overruled, other options kept",
			body: `{"stream":true,"stream_options":{"include_usage":false,"other":1}}`,
			want: `{"stream":true,"stream_options":{"include_usage":true,"other":1}}`,
		},
		{
			name: "stream_options null",
			body: `{"stream":true,"stream_options":null}`,
			want: `{"stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "duplicate keys: the last one, as the proxy read it",
			body: `{"stream":false,"stream":true}`,
			want: `{"stream":true,"stream_options":{"include_usage":true}}`,
		},
		{
			name: "a request that does not stream is left alone",
			body: `{"model":"gpt-4.1","messages":[]}`,
			want: `{"model":"gpt-4.1","messages":[]}`,
		},
		{name: "not JSON", body: `{"stream":true`, wantErr: true},
		{name: "not an object", body: `[1,2]`, wantErr: true},
		{name: "null", body: `null`, wantErr: true},
		{name: "stream of the wrong type", body: `{"stream":"yes"}`, wantErr: true},
		{name: "stream_options of the wrong type", body: `{"stream":true,"stream_options":[true]}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := chatRequestWithUsage([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, errChatBody) {
					t.Fatalf("err = %v, want errChatBody (body out: %s)", err, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(got), `\u003c`) {
				t.Errorf("body was HTML-escaped: %s", got)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("output %s: %v", got, err)
			}
			_ = json.Unmarshal([]byte(tt.want), &w)
			gj, _ := json.Marshal(g)
			wj, _ := json.Marshal(w)
			if string(gj) != string(wj) {
				t.Errorf("got %s\nwant %s", got, tt.want)
			}
		})
	}
}
