package run

import (
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/store"
)

// proxyMeter is the proxy's account of a run's model traffic.
type proxyMeter = egress.Meter

func (m *Manager) meterPath(r *store.Run) string { return m.MeterPath(r) }

// meter is the proxy's account of the run's model traffic; zero when the
// proxy has metered nothing yet (or the file is not one the proxy wrote:
// egress.ReadMeter follows no link and never blocks).
func (m *Manager) meter(r *store.Run) proxyMeter {
	mt, _ := egress.ReadMeter(m.MeterPath(r))
	return mt
}
