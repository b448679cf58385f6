package testkit

// ChatAnswer is what ChatScript says to any prompt.
const ChatAnswer = "The answer is forty-two, said the scripted model."

// ChatScript answers every prompt with ChatAnswer and no tool calls: a
// person's chat with the agent in its terminal UI.
func ChatScript() Script {
	return Script{Name: "chat", FinalText: ChatAnswer}
}
