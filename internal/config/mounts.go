package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/airlock-dev/airlock/internal/prompt"
)

// Mount is one sandbox.mounts entry: a host path the agent's container
// gets at Target, read-only unless ReadOnly is false.
type Mount struct {
	Source   string // absolute host path, ~/ expanded
	Target   string // absolute path in the container
	ReadOnly bool
}

// String is the entry as stored in Config.Sandbox.Mounts, which ParseMount
// reads back unchanged.
func (m Mount) String() string {
	mode := "ro"
	if !m.ReadOnly {
		mode = "rw"
	}
	return m.Source + ":" + m.Target + ":" + mode
}

// ParseMount reads "SOURCE:TARGET[:ro|:rw]": read-only unless :rw says
// otherwise. SOURCE is absolute or starts with ~/ (home's result); TARGET
// is absolute. Only the form is checked here: where SOURCE leads, and
// whether it may be mounted, is decided when a run starts
// (run.CheckMounts), on the path as it is then.
func ParseMount(entry string, home func() (string, error)) (Mount, error) {
	bad := func(why string) error {
		return fmt.Errorf("mount %q: %s; write it as SOURCE:TARGET (read-only) or SOURCE:TARGET:rw, such as \"~/datasets:/data\"", entry, why)
	}
	if strings.ContainsFunc(entry, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return Mount{}, bad("it contains control characters")
	}
	parts := strings.Split(entry, ":")
	m := Mount{ReadOnly: true}
	switch len(parts) {
	case 2:
	case 3:
		switch parts[2] {
		case "ro":
		case "rw":
			m.ReadOnly = false
		default:
			return Mount{}, bad(fmt.Sprintf("the mode %q is neither ro nor rw", parts[2]))
		}
	default:
		return Mount{}, bad("it is not two or three fields separated by ':' (paths with ':' cannot be mounted)")
	}
	src, tgt := parts[0], parts[1]
	if rest, ok := strings.CutPrefix(src, "~/"); ok || src == "~" {
		h, err := home()
		if err != nil {
			return Mount{}, fmt.Errorf("mount %q: %w", entry, err)
		}
		src = filepath.Join(h, rest)
	}
	switch {
	case src == "":
		return Mount{}, bad("the source is empty")
	case strings.HasPrefix(src, "~"):
		return Mount{}, bad("only ~/ is expanded")
	case !filepath.IsAbs(src):
		return Mount{}, bad("the source " + src + " is relative; give an absolute path or one starting with ~/")
	case tgt == "" || !filepath.IsAbs(tgt):
		return Mount{}, bad("the target must be an absolute path in the sandbox")
	case filepath.Clean(tgt) != tgt && filepath.Clean(tgt)+"/" != tgt:
		return Mount{}, bad("the target " + tgt + " is not a clean path (no ., .. or //)")
	}
	m.Source, m.Target = filepath.Clean(src), filepath.Clean(tgt)
	return m, nil
}

// checkSetupCommand is the check of a sandbox.setup entry, the same as a
// prompt's setup: entry.
func checkSetupCommand(cmd string) error { return prompt.ValidateSetupCommand(cmd) }
