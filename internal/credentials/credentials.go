// Package credentials keeps the agent's model-API credentials on the host:
// in the environment, or in a file only the user can read. They are handed to
// the agent's container through the engine API, never on a command line,
// never in an image, a repository or a log.
package credentials

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultPath is $XDG_CONFIG_HOME/airlock/credentials (~/.config by default).
func DefaultPath(getenv func(string) string) (string, error) {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "airlock", "credentials"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", errors.New("neither XDG_CONFIG_HOME nor HOME is set: cannot find the credentials file")
	}
	return filepath.Join(home, ".config", "airlock", "credentials"), nil
}

// Load reads the credentials file: NAME=value lines. A missing file is empty.
// A file others can read is refused, since it would already have leaked.
func Load(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("credentials file %s is readable by other users (mode %04o): run `chmod 600 %s`",
			path, fi.Mode().Perm(), path)
	}
	creds := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, value, ok := strings.Cut(text, "=")
		if !ok || !validName(name) {
			return nil, fmt.Errorf("%s:%d: expected NAME=value", path, line)
		}
		creds[name] = value
	}
	return creds, nil
}

// Set stores one credential, replacing the file atomically with mode 0600.
func Set(path, name, value string) error {
	if !validName(name) {
		return fmt.Errorf("invalid credential name %q", name)
	}
	if value == "" || strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("credential %s: the value must be one non-empty line", name)
	}
	creds, err := Load(path)
	if err != nil {
		return err
	}
	creds[name] = value
	return save(path, creds)
}

// Unset removes one credential; removing a missing one is not an error.
func Unset(path, name string) error {
	creds, err := Load(path)
	if err != nil {
		return err
	}
	delete(creds, name)
	return save(path, creds)
}

func save(path string, creds map[string]string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	names := make([]string, 0, len(creds))
	for n := range creds {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("# airlock credentials: written by `airlock credentials set`; keep this file private.\n")
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%s\n", n, creds[n])
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".credentials.*")
	if err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("save credentials: %w", err)
	}
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	return nil
}

// Source says where a credential came from.
type Source struct {
	Name  string
	Value string
	From  string // "environment" or the file's path
}

// Resolve picks the credentials among names, the environment winning over
// the file.
func Resolve(names []string, lookup func(string) (string, bool), file map[string]string, path string) []Source {
	var out []Source
	for _, n := range names {
		if v, ok := lookup(n); ok && v != "" {
			out = append(out, Source{Name: n, Value: v, From: "environment"})
		} else if v, ok := file[n]; ok && v != "" {
			out = append(out, Source{Name: n, Value: v, From: path})
		}
	}
	return out
}

// Mask shows enough of a secret to recognise it and no more.
func Mask(v string) string {
	if len(v) <= 12 {
		return strings.Repeat("*", len(v))
	}
	return v[:7] + "…" + v[len(v)-4:]
}

func validName(n string) bool {
	if n == "" {
		return false
	}
	for i, c := range n {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
