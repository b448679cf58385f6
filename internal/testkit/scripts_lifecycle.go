package testkit

// Scripts for resumed and restarted conversations (resume, persistent
// containers).

// Resumed is s for a conversation that continues one in which done tool
// calls were already made. The server picks a step by the number of tool
// results in the request, and a resumed conversation carries the earlier
// ones, so s's steps are shifted by done. The padding steps are plain text:
// reached (the conversation was not resumed after all), they end it.
func Resumed(done int, s Script) Script {
	pad := make([]Step, done, done+len(s.Steps))
	for i := range pad {
		pad[i] = Step{Text: "(this step belongs to the earlier conversation)"}
	}
	s.Steps = append(pad, s.Steps...)
	return s
}

// InstallToolScript packs the npm package in /workspace/<dir> to a tarball
// in /tmp and installs it globally (the image's NPM_CONFIG_PREFIX is
// /opt/agent, in the container's own file system), without the network.
// The tarball is gone when the container's /tmp is, so the tool lives on
// only in the container's file system.
func InstallToolScript(dir string) Script {
	return Script{
		Name: "install-tool",
		Steps: []Step{{
			Text: "Installing the tool.",
			Tool: "Bash",
			Input: bashInput("cd /tmp && npm pack /workspace/"+shellQuote(dir)+
				" && npm install -g --offline --no-audit --no-fund /tmp/*.tgz && rm -f /tmp/*.tgz", "Install the tool"),
		}},
		FinalText: "Installed the tool.",
	}
}

// UseToolScript runs tool, saves its output in tool-output.txt and commits
// it.
func UseToolScript(tool string) Script {
	return Script{
		Name: "use-tool",
		Steps: []Step{{
			Text: "Running the tool.",
			Tool: "Bash",
			Input: bashInput(shellQuote(tool)+" > tool-output.txt && git add tool-output.txt && git commit -qm 'Add tool output'",
				"Run the tool and commit its output"),
		}},
		FinalText: "Ran the tool and committed its output.",
	}
}
