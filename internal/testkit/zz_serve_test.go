package testkit

import (
	"os"
	"testing"
	"time"
)

func TestZZServe(t *testing.T) {
	if os.Getenv("ZZ_SERVE") == "" {
		t.Skip()
	}
	s := NewGeminiServer(GeminiDemoScript(os.Getenv("ZZ_SERVE")))
	url, _ := s.Start("127.0.0.1:47123")
	t.Log(url)
	time.Sleep(60 * time.Second)
	for i, r := range s.Requests() {
		t.Logf("req %d %s?%s tools=%d res=%d key=%s", i, r.Path, r.Query, r.NumTools, r.NumToolResults, r.APIKey())
	}
}
