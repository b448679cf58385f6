package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) ?([kmgt]?)(i?b)?$`)

// ParseSize parses a docker-style size such as "512m", "4g", "1.5G" or
// "2GiB" into bytes. Units are binary (k = 1024); no unit means bytes.
func ParseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return 0, fmt.Errorf("invalid size %q; write a number with an optional unit b, k, m, g or t, such as 512m or 4g", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	shift := strings.Index("kmgt", m[2]) + 1 // 0 when there is no unit
	if m[2] == "" {
		shift = 0
	}
	bytes := n * math.Exp2(float64(10*shift))
	if bytes >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(bytes), nil
}

// FormatSize writes n bytes in the largest unit that keeps it whole, the
// inverse of ParseSize for the values people write.
func FormatSize(n int64) string {
	for i, unit := range []string{"t", "g", "m", "k"} {
		div := int64(1) << (10 * (4 - i))
		if n != 0 && n%div == 0 {
			return strconv.FormatInt(n/div, 10) + unit
		}
	}
	return strconv.FormatInt(n, 10)
}
