package sandbox

import (
	"fmt"

	"github.com/moby/moby/client"
)

// Docker is the Engine backed by a Docker-compatible API (Docker, or Podman
// through its compatible socket). It honours DOCKER_HOST like the docker CLI.
type Docker struct {
	cli *client.Client
}

// NewDocker connects lazily: no request is made until the first call.
func NewDocker() (*Docker, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Docker{cli: cli}, nil
}

// Close releases the client's connections.
func (d *Docker) Close() error { return d.cli.Close() }
