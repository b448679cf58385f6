package prompt

import (
	"fmt"
	"path/filepath"
	"strings"
)

// MaxNameLen bounds run names: the name is repeated in the container name,
// the branch airlock/<name>-<8hex> and a directory, and long ones make every
// listing unreadable.
const MaxNameLen = 40

// ValidateName reports whether name can be used as a run name. Names become
// part of a container name, a git branch and a directory, so only the
// characters all three accept without quoting are allowed.
func ValidateName(name string) error {
	const rule = "a run name is 1-40 lower-case letters, digits and single hyphens, starting and ending with a letter or digit (e.g. fix-auth-2)"
	switch {
	case name == "":
		return fmt.Errorf("run name is empty; %s", rule)
	case len(name) > MaxNameLen:
		return fmt.Errorf("run name %q is %d characters long; %s", name, len(name), rule)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case isLowerAlnum(c):
		case c == '-' && i > 0 && i < len(name)-1 && name[i-1] != '-':
		default:
			return fmt.Errorf("invalid run name %q; %s", name, rule)
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// NameFromPath derives a valid run name from a prompt file's name:
// "prompts/Fix Auth.md" gives "fix-auth". It returns "run" when nothing usable
// is left, so the result always passes ValidateName.
func NameFromPath(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(base) {
		if r < 0x80 && isLowerAlnum(byte(r)) {
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteRune(r)
			continue
		}
		hyphen = true
	}
	name := b.String()
	if len(name) > MaxNameLen {
		name = strings.TrimRight(name[:MaxNameLen], "-")
	}
	if name == "" {
		return "run"
	}
	return name
}
