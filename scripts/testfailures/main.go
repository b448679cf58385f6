// Command testfailures prints, from go test -json event files (as
// gotestsum's --jsonfile writes them), why each failed test failed: the
// last lines of its own output, short. scripts/test.sh ends with it, so
// that the reasons are at the end of a long log, where a reader (or a CI
// that shows only a log's head and tail) finds them.
//
//	go run ./scripts/testfailures rest.json cluster.json
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Lines and width cap what is shown of one test; total caps the whole.
const (
	linesPerTest = 15
	lineWidth    = 300
	totalLines   = 200
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "testfailures:", err)
		os.Exit(1)
	}
}

// event is one line of go test -json.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// key is a test, or a package (test ""), of one file: one package runs in
// several of test.sh's processes, each with its own output.
type key struct {
	file      int
	pkg, test string
}

func run(files []string, w io.Writer) error {
	var failed []key
	output := map[key][]string{}
	// Every line of a package's process, in order: go test puts a
	// timeout's panic in the output of a test it cut short.
	whole := map[key][]string{}
	for i, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue // a line go test printed itself, such as a build error
			}
			k := key{i, e.Package, e.Test}
			switch e.Action {
			case "output":
				l := strings.TrimRight(e.Output, "\n")
				output[k] = append(output[k], l)
				pk := key{i, e.Package, ""}
				whole[pk] = append(whole[pk], l)
			case "fail":
				failed = append(failed, k)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	fmt.Fprintln(w, "--- why the failed tests failed (the last lines of each):")
	left := totalLines
	for _, k := range failed {
		if k.test != "" && hasFailedChild(failed, k) {
			continue // its failed subtests say why
		}
		lines := tail(output[k], linesPerTest)
		if k.test == "" {
			lines = packageReason(output[k], whole[k])
		}
		name := k.pkg
		if k.test != "" {
			name += " " + k.test
		}
		fmt.Fprintln(w, "FAIL", name)
		for _, l := range lines {
			if left == 0 {
				fmt.Fprintln(w, "    […]")
				return nil
			}
			left--
			if len(l) > lineWidth {
				l = l[:lineWidth] + "…"
			}
			fmt.Fprintln(w, "   ", l)
		}
	}
	return nil
}

func hasFailedChild(failed []key, k key) bool {
	return slices.ContainsFunc(failed, func(c key) bool {
		return c.file == k.file && c.pkg == k.pkg && strings.HasPrefix(c.test, k.test+"/")
	})
}

// packageReason is why a package failed: a panic anywhere in its
// process's output (a timeout's names the tests it cut short, then every
// goroutine's stack, which is left out), or the end of its own output (a
// build error).
func packageReason(own, whole []string) []string {
	for i, l := range whole {
		if strings.HasPrefix(l, "panic:") {
			end := i + 1
			for end < len(whole) && end < i+linesPerTest && !strings.HasPrefix(whole[end], "goroutine ") {
				end++
			}
			return whole[i:end]
		}
	}
	return tail(own, linesPerTest)
}

func tail(lines []string, n int) []string {
	// Test output's framing lines say nothing a reader needs.
	var kept []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "=== RUN") || strings.HasPrefix(t, "=== PAUSE") || strings.HasPrefix(t, "=== CONT") || strings.HasPrefix(t, "=== NAME") {
			continue
		}
		kept = append(kept, l)
	}
	start := max(0, len(kept)-n)
	if start == 0 || isMessageStart(kept[start]) {
		return kept[start:]
	}
	// The window starts inside a long message (a screen dump, say): its
	// first line, where the test said what it wanted, is the one to keep.
	for h := start - 1; h >= 0; h-- {
		if isMessageStart(kept[h]) {
			return append([]string{kept[h], "[…]"}, kept[start+2:]...)
		}
	}
	return kept[start:]
}

// messageStart matches the first line of what t.Log or t.Error printed:
// its file and line, indented by the test's depth.
var messageStart = regexp.MustCompile(`^\s*[^\s:]+\.go:\d+: `)

func isMessageStart(l string) bool { return messageStart.MatchString(l) }
