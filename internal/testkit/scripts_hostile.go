package testkit

import "fmt"

// BashScript runs each command as one Bash step, in order, then ends: the
// hostile-sandbox tests use it to act as an attacker inside a real run.
func BashScript(name string, commands ...string) Script {
	s := Script{Name: name, FinalText: "Done."}
	for i, c := range commands {
		s.Steps = append(s.Steps, Step{Tool: "Bash", Input: bashInput(c, fmt.Sprintf("Step %d", i+1))})
	}
	return s
}
