// Package e2e holds airlock's end-to-end tests: the real airlock binary, the
// real Docker engine, the real image with the real Claude Code CLI, and the
// scripted model server from internal/testkit standing in for the model.
//
// They need a running engine. Where CI=true they fail when it is missing;
// elsewhere they are skipped with a message.
package e2e
