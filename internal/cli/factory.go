package cli

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// Factory holds the dependencies commands share. The expensive ones are
// made on first use, so `airlock config show` never talks to the engine.
type Factory struct {
	IO      *IOStreams
	Getenv  func(string) string
	Environ func() []string
	Now     func() time.Time
	// Getwd is where the user runs airlock; the project is the repository
	// containing it.
	Getwd func() (string, error)
	UID   int
	GID   int

	storeOnce sync.Once
	store     *store.Store
	storeErr  error

	engineOnce sync.Once
	engine     *sandbox.Docker
	engineErr  error
}

// NewFactory wires the real dependencies.
func NewFactory() *Factory {
	return &Factory{
		IO:      System(),
		Getenv:  os.Getenv,
		Environ: os.Environ,
		Now:     time.Now,
		Getwd:   os.Getwd,
		UID:     os.Getuid(),
		GID:     os.Getgid(),
	}
}

// LookupEnv is os.LookupEnv over the injected environment.
func (f *Factory) LookupEnv(name string) (string, bool) {
	for _, kv := range f.Environ() {
		if len(kv) > len(name) && kv[len(name)] == '=' && kv[:len(name)] == name {
			return kv[len(name)+1:], true
		}
	}
	return "", false
}

// Store opens the run registry.
func (f *Factory) Store() (*store.Store, error) {
	f.storeOnce.Do(func() {
		dir, err := store.DefaultDir(f.Getenv)
		if err != nil {
			f.storeErr = err
			return
		}
		f.store, f.storeErr = store.Open(dir)
	})
	return f.store, f.storeErr
}

// Engine connects to the container engine: AIRLOCK_ENGINE names its kind
// ("docker", the default, or "podman").
func (f *Factory) Engine() (*sandbox.Docker, error) {
	f.engineOnce.Do(func() {
		f.engine, f.engineErr = sandbox.NewKind(f.Getenv("AIRLOCK_ENGINE"))
	})
	return f.engine, f.engineErr
}

// PingedEngine is Engine, checked to answer.
func (f *Factory) PingedEngine(ctx context.Context) (*sandbox.Docker, error) {
	eng, err := f.Engine()
	if err != nil {
		return nil, err
	}
	if err := eng.Ping(ctx); err != nil {
		return nil, err
	}
	return eng, nil
}

func (f *Factory) errorf(format string, args ...any) {
	fmt.Fprintf(f.IO.ErrOut, format+"\n", args...)
}
