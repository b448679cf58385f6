package credentials

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Where an injected credential's value comes from, resolved on the host
// when a run starts and never inside the sandbox:
//
//	env:NAME      the host's environment
//	file:PATH     a file's content (one line; a trailing newline is dropped)
//	cmd:COMMAND   what a command prints, run with /bin/sh -c: a secret
//	              manager's CLI such as `op read op://vault/npm/token`,
//	              `vault kv get -field=token secret/npm` or `pass show npm`
const (
	SchemeEnv  = "env"
	SchemeFile = "file"
	SchemeCmd  = "cmd"
)

// maxSecret caps what a file or command may give: a credential, not a
// document.
const maxSecret = 64 << 10

// DefaultCmdTimeout is how long a cmd: source may take.
const DefaultCmdTimeout = 30 * time.Second

// ParseSource splits a source into its scheme and the rest, checking both.
func ParseSource(s string) (scheme, rest string, err error) {
	scheme, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return "", "", fmt.Errorf("%q has no scheme: write env:NAME, file:PATH or cmd:COMMAND", s)
	case scheme == SchemeEnv:
		if !validName(rest) {
			return "", "", fmt.Errorf("%q: %q is not an environment variable name", s, rest)
		}
	case scheme == SchemeFile, scheme == SchemeCmd:
		if strings.TrimSpace(rest) == "" {
			return "", "", fmt.Errorf("%q: nothing after %s:", s, scheme)
		}
	default:
		return "", "", fmt.Errorf("%q: unknown scheme %q: write env:NAME, file:PATH or cmd:COMMAND", s, scheme)
	}
	return scheme, rest, nil
}

// Sources resolves sources. Its functions are the host's; tests give
// their own.
type Sources struct {
	LookupEnv func(string) (string, bool)
	// Run runs command with /bin/sh -c and returns what it printed.
	Run     func(ctx context.Context, command string) (stdout, stderr []byte, err error)
	Timeout time.Duration // for cmd:; 0 is DefaultCmdTimeout
}

// HostSources reads the process's own environment and runs commands with
// /bin/sh.
func HostSources() Sources {
	return Sources{LookupEnv: os.LookupEnv, Run: runShell}
}

// Resolve returns the value source stands for: one non-empty line.
func (s Sources) Resolve(ctx context.Context, source string) (string, error) {
	scheme, rest, err := ParseSource(source)
	if err != nil {
		return "", err
	}
	var value string
	switch scheme {
	case SchemeEnv:
		v, ok := s.LookupEnv(rest)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: the environment variable %s is not set", source, rest)
		}
		value = v
	case SchemeFile:
		data, err := readCapped(rest)
		if err != nil {
			return "", fmt.Errorf("%s: %w", source, err)
		}
		value = string(data)
	case SchemeCmd:
		timeout := s.Timeout
		if timeout == 0 {
			timeout = DefaultCmdTimeout
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		out, stderr, err := s.Run(cctx, rest)
		if cctx.Err() == context.DeadlineExceeded {
			return "", fmt.Errorf("%s: did not finish within %s%s", source, timeout, stderrNote(stderr))
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w%s", source, err, stderrNote(stderr))
		}
		if len(out) > maxSecret {
			return "", fmt.Errorf("%s: printed more than %d KiB; a credential is one line", source, maxSecret>>10)
		}
		value = string(out)
	}
	value = strings.TrimRight(value, "\r\n")
	switch {
	case strings.TrimSpace(value) == "":
		return "", fmt.Errorf("%s: the value is empty", source)
	case strings.ContainsAny(value, "\r\n\x00"):
		return "", fmt.Errorf("%s: the value is more than one line; a credential must be one line", source)
	}
	return value, nil
}

func stderrNote(stderr []byte) string {
	msg := strings.TrimSpace(string(stderr))
	if msg == "" {
		return ""
	}
	if len(msg) > 2000 {
		msg = "…" + msg[len(msg)-2000:]
	}
	return "; its standard error:\n" + msg
}

// readCapped reads a regular file of at most maxSecret bytes.
func readCapped(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecret+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSecret {
		return nil, fmt.Errorf("larger than %d KiB; a credential is one line", maxSecret>>10)
	}
	return data, nil
}

func runShell(ctx context.Context, command string) ([]byte, []byte, error) {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group, killed whole at the timeout: a secret
	// manager's helper must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	return stdout.Bytes(), stderr.Bytes(), err
}
