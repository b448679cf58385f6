package memengine

import (
	"strconv"
	"strings"
	"time"
)

// Shell runs a container whose command is `sh -c SCRIPT`, understanding
// the few statements the engine suite's scripts use, separated by ";":
// true, false, exit N, sleep N, echo WORDS (optionally >&2 or > PATH, a
// path on a mount), trap ” TERM, and `while true` (runs until killed).
// Anything else exits 127, as a shell would for an unknown command.
func Shell(p *Proc) int {
	cmd := p.Spec.Cmd
	if len(cmd) != 3 || cmd[1] != "-c" || path1(cmd[0]) != "sh" {
		p.Log("memengine: no program for " + strings.Join(cmd, " ") + "\n")
		return 127
	}
	ignoreTerm := false
	for _, stmt := range strings.Split(cmd[2], ";") {
		f := strings.Fields(stmt)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "true":
		case "false":
			return 1
		case "exit":
			n := 0
			if len(f) > 1 {
				n, _ = strconv.Atoi(f[1])
			}
			return n
		case "trap":
			ignoreTerm = strings.Contains(stmt, "TERM")
		case "sleep":
			secs, _ := strconv.ParseFloat(f[len(f)-1], 64)
			if code, ended := wait(p, time.Duration(secs*float64(time.Second)), ignoreTerm); ended {
				return code
			}
		case "while":
			if code, ended := wait(p, 24*time.Hour, ignoreTerm); ended {
				return code
			}
		case "echo":
			if code := echo(p, f[1:]); code != 0 {
				return code
			}
		default:
			p.Log("sh: " + f[0] + ": not found\n")
			return 127
		}
	}
	return 0
}

// wait sleeps d, or until SIGTERM (unless ignored: 143) or SIGKILL (137).
func wait(p *Proc, d time.Duration, ignoreTerm bool) (code int, ended bool) {
	term := p.Terminated()
	if ignoreTerm {
		term = nil
	}
	select {
	case <-time.After(d):
		return 0, false
	case <-term:
		return 143, true
	case <-p.Killed():
		return 137, true
	}
}

func echo(p *Proc, args []string) int {
	target := ""
	var words []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == ">&2":
		case args[i] == ">" && i+1 < len(args):
			target = args[i+1]
			i++
		default:
			words = append(words, strings.Trim(args[i], `"'`))
		}
	}
	line := strings.Join(words, " ") + "\n"
	if target == "" {
		p.Log(line)
		return 0
	}
	if err := p.WriteFile(target, []byte(line)); err != nil {
		p.Log("sh: " + err.Error() + "\n")
		return 1
	}
	return 0
}

func path1(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}
