# airlock's build, set-up and test entry points. `make test` is what CI runs
# (via .ci/run); it prepares the machine first, so it works on a fresh one.

GO        ?= go
BIN       := bin/airlock
PREFIX    ?= /usr/local
GOTEST_TIMEOUT ?= 80m
FUZZTIME  ?= 20s

.PHONY: all build web install setup image demo test bench fuzz clean k8s-up k8s-down k8s-images

all: build

# Static, so the same binary runs on any Linux host and can be copied into
# containers. -buildvcs=auto overrides a GOFLAGS=-buildvcs=false in the
# environment, so `airlock version` names the commit it was built from.
# The web UI (`airlock ui`) is built first: the binary embeds it.
build: web
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -o $(BIN) ./cmd/airlock

# The web UI: web/ bundled by esbuild into internal/ui/dist (docs/ui.md).
# npm ci runs when node_modules is missing or older than the lock file;
# --ignore-scripts: none of the packages needs an install script to work.
NPM       ?= npm
web: web/node_modules/.airlock-installed
	cd web && $(NPM) run --silent build

web/node_modules/.airlock-installed: web/package-lock.json web/package.json
	cd web && NODE_EXTRA_CA_CERTS=$${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt} \
		$(NPM) ci --ignore-scripts --no-fund --no-audit --loglevel=error
	touch $@

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

# The web page's unit tests first (Node's runner, a second); its browser
# tests are Go tests (internal/e2e/ui_browser_test.go). scripts/test.sh runs
# the cluster's tests (then takes the cluster down) and the hostile-sandbox
# tests beside the rest, in two processes.
test: setup build image k8s-up k8s-images
	cd web && $(NPM) test --silent
	GO=$(GO) GOTEST_TIMEOUT=$(GOTEST_TIMEOUT) scripts/test.sh

bench: setup build image k8s-up k8s-images
	scripts/bench.sh

# The test Kubernetes cluster the kubernetes engine's tests run on
# (scripts/k8s-cluster.sh: built once into /var/cache/airlock-k8s, then up in
# seconds; kubeconfig /var/lib/airlock-k8s/kubeconfig). k8s-images copies the
# default image from Docker into it (the cluster has no registry).
k8s-up: setup
	scripts/k8s-cluster.sh up

k8s-down:
	scripts/k8s-cluster.sh down

k8s-images: k8s-up build image
	scripts/k8s-cluster.sh load $$($(BIN) image build)

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
	find internal/ui/dist -mindepth 1 ! -name .gitkeep -delete
