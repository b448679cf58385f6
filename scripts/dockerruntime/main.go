// Command dockerruntime adds an OCI runtime to a dockerd configuration
// (daemon.json) read from stdin and writes the result to stdout, keeping
// every other setting. scripts/setup.sh uses it to register gVisor's runsc:
//
//	dockerruntime runsc /usr/bin/runsc --network=none --host-uds=open < daemon.json
//
// An entry of that name the admin already has is left as it is (a note on
// stderr says what airlock needs when it differs): merged, never clobbered.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dockerruntime:", err)
		os.Exit(1)
	}
}

func run(args []string, in io.Reader, out, errOut io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: dockerruntime NAME PATH [RUNTIME-ARG...] < daemon.json > daemon.json.new")
	}
	name, path, rtArgs := args[0], args[1], args[2:]
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	conf := map[string]any{}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &conf); err != nil {
			return fmt.Errorf("the existing daemon.json is not a JSON object (fix it by hand): %w", err)
		}
	}
	runtimes, ok := conf["runtimes"].(map[string]any)
	if conf["runtimes"] != nil && !ok {
		return fmt.Errorf(`"runtimes" in daemon.json is not an object (fix it by hand)`)
	}
	if runtimes == nil {
		runtimes = map[string]any{}
	}
	want := map[string]any{"path": path}
	if len(rtArgs) > 0 {
		a := make([]any, len(rtArgs))
		for i, s := range rtArgs {
			a[i] = s
		}
		want["runtimeArgs"] = a
	}
	if have, ok := runtimes[name]; ok {
		if !reflect.DeepEqual(have, want) {
			w, _ := json.Marshal(want)
			fmt.Fprintf(errOut, "dockerruntime: daemon.json already has a runtime %q; left as it is (airlock's set-up would register %s)\n", name, w)
		}
	} else {
		runtimes[name] = want
	}
	conf["runtimes"] = runtimes
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}
