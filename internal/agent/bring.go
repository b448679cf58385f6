package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// A Bringer is an agent whose own configuration in the user's home a
// profile can bring into a run (config.BringItems): copied into the run's
// home, never mounted, so nothing the agent does reaches the user's files.
type Bringer interface {
	Bring(item, hostHome, runHome string, uid, gid int) error
}

// maxBring bounds what one item copies: instructions and command files
// are small, and a home directory is not what bring is for.
const maxBring = 16 << 20

// Bring implements Bringer: instructions is ~/.claude/CLAUDE.md, commands
// and agents the directories of that name under ~/.claude, mcp the
// mcpServers of ~/.claude.json. An item the user does not have is an
// error, as a typo in the profile would be.
func (Claude) Bring(item, hostHome, runHome string, uid, gid int) error {
	switch item {
	case "instructions":
		return copyHostTree(filepath.Join(hostHome, ".claude", "CLAUDE.md"), filepath.Join(runHome, ".claude", "CLAUDE.md"), runHome, uid, gid)
	case "commands", "agents":
		return copyHostTree(filepath.Join(hostHome, ".claude", item), filepath.Join(runHome, ".claude", item), runHome, uid, gid)
	case "mcp":
		return bringMCP(filepath.Join(hostHome, ".claude.json"), filepath.Join(runHome, ".claude.json"), uid, gid)
	}
	return fmt.Errorf("Claude Code has no %q to bring", item)
}

// bringMCP copies the MCP servers of the user's Claude Code settings. A
// server configured with environment variables or headers is refused:
// those are where its credentials go, and credentials never enter the
// sandbox (inject them at the proxy with [[egress.inject]] instead).
func bringMCP(src, dst string, uid, gid int) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("bring mcp: %w", err)
	}
	var settings struct {
		MCPServers map[string]map[string]any `json:"mcpServers"`
	}
	if err := json.Unmarshal(data, &settings); err != nil {
		return fmt.Errorf("bring mcp: %s: %w", src, err)
	}
	if len(settings.MCPServers) == 0 {
		return fmt.Errorf("bring mcp: %s has no mcpServers", src)
	}
	names := make([]string, 0, len(settings.MCPServers))
	for name := range settings.MCPServers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, k := range []string{"env", "headers"} {
			if m, ok := settings.MCPServers[name][k].(map[string]any); ok && len(m) > 0 {
				return fmt.Errorf("bring mcp: server %q of %s sets %s, where its credentials go; airlock does not copy credentials into the sandbox: inject them at the proxy with [[egress.inject]], or leave the server out", name, src, k)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("bring mcp: %w", err)
	}
	if err := mergeJSONFile(dst, map[string]any{"mcpServers": settings.MCPServers}, uid, gid); err != nil {
		return fmt.Errorf("bring mcp: %w", err)
	}
	return nil
}

// copyHostTree copies a file or a directory of the user's into the run's
// home: regular files and directories only (a link on the user's side is
// skipped, not followed), at most maxBring bytes, owned by uid:gid. The
// run's home is airlock's own, made moments ago; nothing in it is followed
// either.
func copyHostTree(src, dst, runHome string, uid, gid int) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return fmt.Errorf("bring %s: %w", src, err)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return fmt.Errorf("bring %s: not a regular file or directory", src)
	}
	// The parents in the run's home, owned by the agent.
	rel, err := filepath.Rel(runHome, filepath.Dir(dst))
	if err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("bring %s: %s is outside the run's home", src, dst)
	}
	p := runHome
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "." || part == "" {
			continue
		}
		p = filepath.Join(p, part)
		if err := mkdirOwned(p, uid, gid); err != nil {
			return fmt.Errorf("bring %s: %w", src, err)
		}
	}
	budget := int64(maxBring)
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, r)
		switch {
		case d.IsDir():
			return mkdirOwned(target, uid, gid)
		case !d.Type().IsRegular():
			return nil // a link or a special file: not the user's configuration
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if budget -= info.Size(); budget < 0 {
			return fmt.Errorf("more than %d MiB", maxBring>>20)
		}
		return copyFileOwned(path, target, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("bring %s: %w", src, err)
	}
	return nil
}

func mkdirOwned(p string, uid, gid int) error {
	fi, err := os.Lstat(p)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s exists and is not a directory", p)
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return err
	}
	return nil
}

func copyFileOwned(src, dst string, uid, gid int) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Lchown(dst, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return err
	}
	return nil
}
