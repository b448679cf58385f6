package run

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
)

// TODO(lead): replaced by egress.Meter / egress.ReadMeter when the egress
// branch lands.
type proxyMeter struct {
	ModelRequests            int       `json:"model_requests"`
	InputTokens              int       `json:"input_tokens"`
	OutputTokens             int       `json:"output_tokens"`
	CacheCreationInputTokens int       `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int       `json:"cache_read_input_tokens"`
	CostUSD                  float64   `json:"cost_usd"`
	Exhausted                string    `json:"exhausted,omitempty"`
	ExhaustedAt              time.Time `json:"exhausted_at,omitzero"`
	UpdatedAt                time.Time `json:"updated_at,omitzero"`
}

func (m *Manager) meterPath(r *store.Run) string {
	return filepath.Join(m.Store.RunDir(r.ID), "egress", "meter.json")
}

// meter is the proxy's account of the run's model traffic; zero when the
// proxy has metered nothing yet.
func (m *Manager) meter(r *store.Run) proxyMeter {
	var mt proxyMeter
	f, err := os.OpenFile(m.meterPath(r), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return mt
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return mt
	}
	data, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	json.Unmarshal(data, &mt)
	return mt
}
