package config

import "github.com/airlock-dev/airlock/internal/egress"

// ScanConfig is the proxy's secret-scan configuration from [egress] scan,
// scan_block, scan_log, scan_off and scan_body_kib (all validated when
// they were set).
func (e Egress) ScanConfig() *egress.ScanConfig {
	c := &egress.ScanConfig{Mode: egress.ScanMode(e.Scan), BodyLimit: int64(e.ScanBodyKiB) << 10}
	for _, l := range []struct {
		mode  egress.ScanMode
		hosts []string
	}{{egress.ScanBlock, e.ScanBlock}, {egress.ScanLog, e.ScanLog}, {egress.ScanOff, e.ScanOff}} {
		for _, h := range l.hosts {
			p, err := egress.ParseScanHost(h)
			if err != nil {
				p = h // refused when set; NewServer refuses it again
			}
			c.Hosts = append(c.Hosts, egress.ScanHostRule{Pattern: p, Mode: l.mode})
		}
	}
	return c
}
