package prompt

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// ValidateEnvEntry checks the syntax of one environment entry, NAME or
// NAME=value, without resolving it.
func ValidateEnvEntry(entry string) error {
	name, _, _ := strings.Cut(entry, "=")
	if !validEnvName(name) {
		return fmt.Errorf("invalid environment entry %q: the name must be letters, digits and underscores, not starting with a digit (NAME or NAME=value)", entry)
	}
	if strings.ContainsRune(entry, 0) {
		return fmt.Errorf("invalid environment entry %q: contains a NUL byte", name)
	}
	return nil
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// ParseEnv resolves entries of the form NAME (take the value from lookup,
// usually os.LookupEnv) or NAME=value into NAME=value pairs. When a name
// repeats, the last entry wins but keeps the first one's position.
func ParseEnv(entries []string, lookup func(string) (string, bool)) ([]string, error) {
	out := make([]string, 0, len(entries))
	index := make(map[string]int, len(entries))
	for _, e := range entries {
		if err := ValidateEnvEntry(e); err != nil {
			return nil, err
		}
		name, value, hasValue := strings.Cut(e, "=")
		if !hasValue {
			v, ok := lookup(name)
			if !ok {
				return nil, fmt.Errorf("environment variable %s is not set; export it, or write %s=value to set it explicitly", name, name)
			}
			value = v
		}
		kv := name + "=" + value
		if i, ok := index[name]; ok {
			out[i] = kv
			continue
		}
		index[name] = len(out)
		out = append(out, kv)
	}
	return out, nil
}

// LoadEnvFile reads a dotenv-style file: KEY=VALUE lines, optionally prefixed
// with "export ", blank lines and # comments. Values may be single-quoted
// (taken literally) or double-quoted (\n, \t, \", \\ and \$ are unescaped);
// an unquoted value ends at " #". Errors name path:line.
func LoadEnvFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	return parseEnvFile(path, data)
}

func parseEnvFile(path string, data []byte) ([]string, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	var out []string
	for i, line := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		name, raw, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, fmt.Errorf("%s:%d: expected NAME=value, got %q", path, lineNo, line)
		}
		if !validEnvName(name) {
			return nil, fmt.Errorf("%s:%d: invalid variable name %q: use letters, digits and underscores, not starting with a digit", path, lineNo, name)
		}
		value, err := envFileValue(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w", path, lineNo, name, err)
		}
		out = append(out, name+"="+value)
	}
	return out, nil
}

func envFileValue(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	quote := raw[0]
	if quote != '"' && quote != '\'' {
		if i := strings.Index(raw, " #"); i >= 0 {
			raw = strings.TrimSpace(raw[:i])
		}
		return raw, nil
	}
	var b strings.Builder
	for i := 1; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == quote:
			rest := strings.TrimSpace(raw[i+1:])
			if rest != "" && !strings.HasPrefix(rest, "#") {
				return "", fmt.Errorf("unexpected %q after the closing quote", rest)
			}
			return b.String(), nil
		case c == '\\' && quote == '"' && i+1 < len(raw):
			i++
			switch raw[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '"', '\\', '$':
				b.WriteByte(raw[i])
			default:
				b.WriteByte('\\')
				b.WriteByte(raw[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("value has no closing %c (values cannot span lines)", quote)
}

// MaxSetupCommand caps one setup command (sandbox.setup, setup:).
const MaxSetupCommand = 4 << 10

// ValidateSetupCommand checks one setup command: a shell command line for
// /bin/sh -c, not blank, without NUL, at most MaxSetupCommand bytes.
func ValidateSetupCommand(cmd string) error {
	switch {
	case strings.TrimSpace(cmd) == "":
		return fmt.Errorf("setup command %q is blank", cmd)
	case strings.ContainsRune(cmd, 0):
		return fmt.Errorf("setup command %q contains a NUL byte", cmd)
	case len(cmd) > MaxSetupCommand:
		return fmt.Errorf("setup command %.40q… is longer than %d bytes; put it in a script in the repository and run that", cmd, MaxSetupCommand)
	}
	return nil
}
