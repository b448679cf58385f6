package memengine_test

import (
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/memengine"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
)

func TestMemEngine(t *testing.T) {
	sandboxtest.RunContractSuite(t, func() sandbox.Engine { return memengine.New(sandboxtest.Image) })
}
