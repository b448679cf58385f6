package config

import (
	"fmt"

	"github.com/airlock-dev/airlock/internal/egress"
)

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

// projectMayScan lets a repository's own config make secret scanning
// stricter, never looser: relaxed, it would let what the agent finds
// (credentials you passed in, a file's secrets) leave unchecked, and the
// repository may be anyone's.
func projectMayScan(key string, v any) error {
	loose := false
	switch key {
	case "egress.scan":
		m, _ := egress.ParseScanMode(v.(string))
		loose = m != egress.ScanBlock
	case "egress.scan_log", "egress.scan_off":
		loose = len(v.([]string)) > 0
	case "egress.scan_body_kib":
		loose = v.(int64) < egress.DefaultScanBodyKiB
	}
	if loose {
		return fmt.Errorf("a repository's own config may make secret scanning stricter, not looser; set it in your user config (~/.config/airlock/config.toml)")
	}
	return nil
}
