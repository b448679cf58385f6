package agent

import (
	"fmt"
	"strings"
)

// All are the agents airlock can run, the default first.
func All() []Agent {
	return []Agent{Claude{}, Codex{}, Gemini{}, Opencode{}}
}

// Default is the agent run when none is named.
const Default = "claude"

// Names are the names of All, in order.
func Names() []string {
	all := All()
	names := make([]string, len(all))
	for i, a := range all {
		names[i] = a.Name()
	}
	return names
}

// Lookup finds an agent by name; "" is the default.
func Lookup(name string) (Agent, error) {
	if name == "" {
		name = Default
	}
	for _, a := range All() {
		if a.Name() == name {
			return a, nil
		}
	}
	return nil, fmt.Errorf("unknown agent %q; the agents are %s", name, strings.Join(Names(), ", "))
}

// MustLookup is Lookup for a name already checked (a run's record holds
// one Lookup accepted); an unknown one is the default agent.
func MustLookup(name string) Agent {
	if a, err := Lookup(name); err == nil {
		return a
	}
	return Claude{}
}

// AllCredentialNames are the credential names of every agent, without
// repeats, in order.
func AllCredentialNames() []string {
	var names []string
	seen := map[string]bool{}
	for _, a := range All() {
		for _, n := range a.CredentialNames() {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	return names
}

// IsSecretName reports whether any agent holds the named credential secret.
func IsSecretName(name string) bool {
	for _, a := range All() {
		if a.IsSecret(name) {
			return true
		}
	}
	return false
}
