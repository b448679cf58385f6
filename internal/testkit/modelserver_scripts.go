package testkit

import (
	"fmt"
	"path"
	"strings"
)

// The built-in scripts assume Claude Code's tool names and that the agent
// works in /workspace, as it does in airlock's container.

// DemoScript writes hello.py, runs it and commits it, in /workspace.
func DemoScript() Script { return DemoScriptIn("/workspace") }

// DemoScriptIn is DemoScript for an agent working in dir, which must be
// absolute: Claude Code's Write tool takes absolute paths only.
func DemoScriptIn(dir string) Script {
	return Script{
		Name: "demo",
		Steps: []Step{
			{
				Text: "I'll create a small Python script.",
				Tool: "Write",
				Input: map[string]any{
					"file_path": path.Join(dir, "hello.py"),
					"content":   "print(\"Hello from airlock\")\n",
				},
			},
			{Text: "Let me run it.", Tool: "Bash", Input: bashInput("python3 hello.py", "Run hello.py")},
			{Text: "It works. Committing.", Tool: "Bash", Input: bashInput(`git add hello.py && git commit -m "Add hello.py"`, "Commit hello.py")},
		},
		FinalText: "Created hello.py, which prints \"Hello from airlock\", and committed it.",
	}
}

// FailScript answers every main request with HTTP 500 api_error and
// `x-should-retry: false`. Claude Code honours the header: it makes one
// request and ends with an error result carrying the message, in well under
// a second. Without the header it retries with backoff for minutes.
func FailScript() Script {
	return Script{
		Name: "fail",
		Fail: &Failure{
			Status:  500,
			Type:    "api_error",
			Message: "airlock test model: scripted failure",
			NoRetry: true,
		},
	}
}

// DestroyScript tries to destroy the repository's history from inside.
func DestroyScript() Script {
	return Script{
		Name: "destroy",
		Steps: []Step{
			{Text: "Deleting the branches.", Tool: "Bash", Input: bashInput(`git update-ref -d refs/heads/main || true; git update-ref -d "$(git symbolic-ref -q HEAD)" || true`, "Delete branch refs")},
			{Tool: "Bash", Input: bashInput("git gc --prune=now --aggressive", "Prune all objects")},
			{Tool: "Bash", Input: bashInput("rm -rf .git", "Remove the repository")},
		},
		FinalText: "The repository is gone.",
	}
}

// EndlessScript never ends on its own: every answer is another harmless
// tool call, for testing turn, time and cost budgets.
func EndlessScript() Script {
	return Script{Name: "endless", Endless: true}
}

// PlantHooks returns the hooks PlantScript installs, both in .git/hooks and
// in the directory it sets as core.hooksPath.
func PlantHooks() []string {
	return []string{
		"applypatch-msg", "pre-applypatch", "post-applypatch",
		"pre-commit", "pre-merge-commit", "prepare-commit-msg", "commit-msg", "post-commit",
		"pre-rebase", "post-checkout", "post-merge", "pre-push", "pre-receive", "update",
		"proc-receive", "post-receive", "post-update", "reference-transaction",
		"push-to-checkout", "pre-auto-gc", "post-rewrite", "sendemail-validate",
		"fsmonitor-watchman", "post-index-change",
	}
}

// PlantConfig returns the git configuration keys PlantScript sets to
// commands.
func PlantConfig() []string {
	return []string{
		"core.fsmonitor", "core.pager", "core.editor", "core.sshCommand",
		"diff.external", "filter.x.clean", "filter.x.smudge", "diff.x.textconv",
	}
}

// PlantScript plants, in the .git of the agent's working directory, every way a repository can make
// git run a command: hooks, core.hooksPath, and configuration keys that name
// commands (with a .gitattributes that routes every file through them). Each
// command touches marker-<name>, so a test whose marker is a host path knows
// the host ran one if such a file appears. Then it commits a file so there is
// work to merge.
//
// Every trap exits 0 and passes data through, and a missing marker directory
// is ignored: inside the sandbox, where the marker path does not exist, git
// keeps working normally and the commit succeeds. marker must not contain a
// newline.
func PlantScript(marker string) Script {
	touch := func(name string) string {
		return fmt.Sprintf("touch %s 2>/dev/null", shellQuote(marker+"-"+name))
	}
	hook := func(name string) string {
		return "#!/bin/sh\n" + touch(name) + "\nexit 0\n"
	}

	var hooks strings.Builder
	hooks.WriteString("set -e\nmkdir -p .git/hooks .git/airlock-hooks\n")
	for _, h := range PlantHooks() {
		for _, dir := range []string{".git/hooks", ".git/airlock-hooks"} {
			name := h
			if dir == ".git/airlock-hooks" {
				name = "hookspath-" + h
			}
			fmt.Fprintf(&hooks, "cat > %s/%s <<'AIRLOCK_EOF'\n%sAIRLOCK_EOF\nchmod +x %s/%s\n", dir, h, hook(name), dir, h)
		}
	}

	// Values run through the shell; git appends arguments as "$@".
	commands := map[string]string{
		"core.fsmonitor":  touch("core.fsmonitor") + "; exit 1", // failure: git falls back to a full scan
		"core.pager":      touch("core.pager") + "; cat",
		"core.editor":     touch("core.editor") + "; true",
		"core.sshCommand": touch("core.sshCommand") + "; false",
		"diff.external":   touch("diff.external") + "; true",
		"filter.x.clean":  touch("filter.x.clean") + "; cat",
		"filter.x.smudge": touch("filter.x.smudge") + "; cat",
		"diff.x.textconv": touch("diff.x.textconv") + "; cat",
	}
	var config strings.Builder
	config.WriteString("set -e\n")
	// A relative hooksPath resolves against the worktree wherever the copy
	// is, so the traps follow it to the host.
	config.WriteString("git config core.hooksPath .git/airlock-hooks\n")
	for _, key := range PlantConfig() {
		fmt.Fprintf(&config, "git config %s %s\n", key, shellQuote(commands[key]))
	}
	config.WriteString("printf '* filter=x diff=x\\n' > .gitattributes\n")

	return Script{
		Name: "plant",
		Steps: []Step{
			{Text: "Installing hooks.", Tool: "Bash", Input: bashInput(hooks.String(), "Install git hooks")},
			{Text: "Configuring git.", Tool: "Bash", Input: bashInput(config.String(), "Set git configuration")},
			{Text: "Committing a change.", Tool: "Bash", Input: bashInput(
				"echo 'planted by the airlock test model' > planted.txt && git add planted.txt .gitattributes && git commit -m 'Add planted.txt'",
				"Commit a file")},
		},
		FinalText: "Planted the traps and committed planted.txt.",
	}
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
