# airlock's build, set-up and test entry points. `make test` is what CI runs
# (via .ci/run); it prepares the machine first, so it works on a fresh one.

GO        ?= go
BIN       := bin/airlock
PREFIX    ?= /usr/local
GOTEST_TIMEOUT ?= 75m
FUZZTIME  ?= 20s

.PHONY: all build install setup image demo test bench fuzz clean

all: build

# Static, so the same binary runs on any Linux host and can be copied into
# containers. -buildvcs=auto overrides a GOFLAGS=-buildvcs=false in the
# environment, so `airlock version` names the commit it was built from.
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -o $(BIN) ./cmd/airlock

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/airlock

setup:
	scripts/setup.sh

# The base comes from /etc/airlock/config.toml, which setup writes
# (bootstrap: from Debian packages, no registry needed). The image is
# content-addressed, so this returns at once when nothing changed. Incus keeps
# its own images (the Podman tests build theirs, from Docker's bases).
image: setup build
	$(BIN) image build
	$(BIN) image build --engine incus

# Each stage timed and skipped when already done (scripts/demo.sh); only
# Docker's image: the demo runs on the default engine.
demo:
	scripts/demo.sh

test: setup build image
	$(GO) test -count=1 -timeout $(GOTEST_TIMEOUT) ./...

bench: setup build image
	scripts/bench.sh

# A short run of every fuzz target in the module, one at a time (go test
# fuzzes one target per invocation).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin
