// Command airlock runs AI coding agents autonomously in isolated containers.
package main

import (
	"os"

	"github.com/airlock-dev/airlock/internal/cli"
)

func main() { os.Exit(cli.Main()) }
