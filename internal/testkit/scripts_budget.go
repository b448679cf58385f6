package testkit

import "fmt"

// SleepScript runs one Bash step that sleeps for the given number of
// seconds, then ends: a run that keeps its agent busy long enough for a
// test to see how many run at once.
func SleepScript(seconds int) Script {
	return Script{
		Name: "sleep",
		Steps: []Step{
			{Text: "Waiting a moment.", Tool: "Bash", Input: bashInput(fmt.Sprintf("sleep %d", seconds), "Sleep")},
		},
		FinalText: "Done waiting.",
	}
}

// CacheWriteScript writes content to the file at path (inside the sandbox,
// say in a dependency cache) and ends.
func CacheWriteScript(path, content string) Script {
	return Script{
		Name: "cache-write",
		Steps: []Step{
			{Text: "Filling the cache.", Tool: "Bash", Input: bashInput(
				fmt.Sprintf("printf '%%s' %s > %s", shellQuote(content), shellQuote(path)), "Write to the cache")},
		},
		FinalText: "Cache filled.",
	}
}

// CacheReadScript copies the file at path (or, when it is missing, the
// word "missing") into seen.txt in /workspace and commits it, so a test
// reads what the sandbox saw from the run's branch.
func CacheReadScript(path string) Script {
	return Script{
		Name: "cache-read",
		Steps: []Step{
			{Text: "Looking in the cache.", Tool: "Bash", Input: bashInput(
				fmt.Sprintf("{ cat %s 2>/dev/null || echo missing; } > /workspace/seen.txt && cd /workspace && git add seen.txt && git commit -qm 'What the cache held'", shellQuote(path)),
				"Read the cache")},
		},
		FinalText: "Recorded what the cache held.",
	}
}
