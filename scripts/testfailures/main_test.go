package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	var events bytes.Buffer
	enc := json.NewEncoder(&events)
	emit := func(action, pkg, test, output string) {
		enc.Encode(event{Action: action, Package: pkg, Test: test, Output: output})
	}
	emit("output", "p/a", "TestGood", "=== RUN   TestGood\n")
	emit("output", "p/a", "TestGood", "    a_test.go:3: fine\n")
	emit("pass", "p/a", "TestGood", "")
	emit("output", "p/a", "TestParent/sub", "=== RUN   TestParent/sub\n")
	emit("output", "p/a", "TestParent/sub", "    a_test.go:9: the widget is blue, want red\n")
	emit("fail", "p/a", "TestParent/sub", "")
	emit("output", "p/a", "TestLong", "    a_test.go:20: the screen never showed the prompt:\n")
	for i := range 40 {
		emit("output", "p/a", "TestLong", fmt.Sprintf("        screen line %d\n", i))
	}
	emit("output", "p/a", "TestLong", "--- FAIL: TestLong (1.00s)\n")
	emit("fail", "p/a", "TestLong", "")
	emit("output", "p/a", "TestParent", "    a_test.go:7: set up\n")
	emit("fail", "p/a", "TestParent", "")
	// go test puts a timeout's panic in the output of a test it cut short.
	emit("output", "p/b", "TestSlow", "=== RUN   TestSlow\n")
	emit("output", "p/b", "TestSlow", "panic: test timed out after 1h15m0s\n")
	emit("output", "p/b", "TestSlow", "\trunning tests:\n")
	emit("output", "p/b", "TestSlow", "\t\tTestSlow (5m30s)\n")
	emit("output", "p/b", "TestSlow", "\n")
	emit("output", "p/b", "TestSlow", "goroutine 7 [running]:\n")
	emit("output", "p/b", "TestSlow", "testing.(*M).startAlarm.func1()\n")
	emit("output", "p/b", "", "FAIL\tp/b\t4500.1s\n")
	emit("fail", "p/b", "", "")
	file := filepath.Join(t.TempDir(), "x.json")
	// go test -json interleaves lines of its own, such as build errors.
	if err := os.WriteFile(file, append([]byte("# p/c\nbuild failed\n"), events.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
	// The same package passed in another process: its output is not this
	// failure's.
	other := filepath.Join(t.TempDir(), "other.json")
	os.WriteFile(other, []byte("{\"Action\":\"output\",\"Package\":\"p/b\",\"Output\":\"ok  \\tp/b\\t0.1s [no tests to run]\\n\"}\n{\"Action\":\"pass\",\"Package\":\"p/b\"}\n"), 0o644)
	var out bytes.Buffer
	if err := run([]string{file, other}, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"FAIL p/a TestParent/sub\n    " + "    a_test.go:9: the widget is blue, want red\n",
		"FAIL p/b\n    panic: test timed out after 1h15m0s\n",
		"TestSlow (5m30s)",
		// A long message keeps its first line, and ends as it ended.
		"FAIL p/a TestLong\n        a_test.go:20: the screen never showed the prompt:\n    […]\n",
		"screen line 39\n    --- FAIL: TestLong",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"screen line 26\n", "TestGood", "FAIL p/a TestParent\n", "=== RUN", "goroutine 7", "startAlarm", "no tests to run"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q:\n%s", unwanted, got)
		}
	}

	out.Reset()
	if err := run([]string{filepath.Join(t.TempDir(), "none.json")}, &out); err == nil {
		t.Error("a missing file: no error")
	}
}

func TestRunNothingFailed(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.json")
	os.WriteFile(file, []byte(`{"Action":"pass","Package":"p","Test":"TestA"}`+"\n"), 0o644)
	var out bytes.Buffer
	if err := run([]string{file}, &out); err != nil || out.Len() != 0 {
		t.Errorf("run = %v, printed %q; want nothing", err, out.String())
	}
}
