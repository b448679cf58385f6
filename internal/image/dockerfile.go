package image

import (
	"fmt"
	"strings"
)

// caBundle is the system trust store once update-ca-certificates has run;
// every TLS client in the image is pointed at it, because several (Node,
// npm, Python's requests) ignore the system store by default.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// packages are installed from the base image's own apt sources. Not
// Debian's npm: it depends on some 350 node-* packages, two thirds of the
// image's packages and of its build time; npm comes from its registry
// instead (npmVersion), with its dependencies bundled.
var packages = []string{
	"ca-certificates", "curl", "git", "jq", "nodejs", "openssh-client",
	"procps", "python3", "ripgrep", "tini",
	// Interactive sessions: the agent's terminal UI runs in tmux, and
	// ncurses-term has terminfo for the TERM values people bring.
	"tmux", "ncurses-term", "less",
}

// npm, pinned by version and by the SHA-512 of its tarball (the registry's
// dist.integrity, in hex). npm 10 supports bookworm's Node.js 18.
const (
	npmVersion = "10.9.2"
	npmSHA512  = "8ab88f10f224a0c614cb717a7f7c30499014f77134120e9c1f0211ea3cf3397592cbe483feb38e0c4b3be1c54e347292c76a1b5edb94a3289d5448484ab8ac81"
)

// dockerfile renders the default image's Dockerfile. Its text is part of
// the tag hash, so any change here makes a new image.
func dockerfile(spec Spec) string {
	spec = spec.withDefaults()
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	dev := spec.dev != nil
	if dev {
		w("# airlock agent image on the project's dev container; generated, its inputs are hashed into the tag.")
	} else {
		w("# airlock default agent image; generated, its inputs are hashed into the tag.")
	}
	w("FROM %s", spec.baseRef())
	// /opt/agent is where the agent (never root) installs global tools; in a
	// persistent container they survive stop and start. A dev container
	// keeps its own PATH (its toolchains) after it; its USER may be anyone,
	// and airlock's layers install as root.
	if dev {
		w("USER root")
		w("ENV PATH=/opt/agent/bin:${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin} \\")
	} else {
		w("ENV PATH=/opt/agent/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\")
	}
	w("    LANG=C.UTF-8 \\")
	w("    NODE_EXTRA_CA_CERTS=%s \\", caBundle)
	w("    SSL_CERT_FILE=%s \\", caBundle)
	w("    REQUESTS_CA_BUNDLE=%s", caBundle)
	if len(spec.CACerts) > 0 {
		w("COPY ca/ /usr/local/share/ca-certificates/airlock/")
	}
	// The base may have no ca-certificates yet, so the first apt run cannot
	// use the system store: when the mirror is https it trusts the extra CAs
	// directly. Plain http mirrors need nothing.
	// dpkg syncs every file it unpacks; in a throw-away build layer that is
	// most of the step's time (force-unsafe-io, dropped again after).
	w(`RUN set -eu; \`)
	if dev {
		w(`    if ! command -v apt-get >/dev/null 2>&1; then \`)
		w(`        echo "airlock: the dev container image has no apt-get: airlock adds the tools the agent needs (git, Node.js, tini, tmux) with apt, so the image must be Debian or Ubuntu based" >&2; exit 1; \`)
		w(`    fi; \`)
	}
	w(`    export DEBIAN_FRONTEND=noninteractive; \`)
	w(`    echo force-unsafe-io >/etc/dpkg/dpkg.cfg.d/airlock-build; \`)
	w(`    aptca=""; \`)
	w(`    if [ ! -s %s ] && ls /usr/local/share/ca-certificates/airlock/*.crt >/dev/null 2>&1; then \`, caBundle)
	w(`        cat /usr/local/share/ca-certificates/airlock/*.crt >/tmp/airlock-ca.pem; \`)
	w(`        aptca="-o Acquire::https::CaInfo=/tmp/airlock-ca.pem"; \`)
	w(`    fi; \`)
	w(`    apt-get $aptca update; \`)
	w(`    apt-get $aptca install -y --no-install-recommends ca-certificates; \`)
	w(`    update-ca-certificates; \`)
	w(`    rm -f /tmp/airlock-ca.pem; \`)
	w(`    apt-get install -y --no-install-recommends %s; \`, strings.Join(packages, " "))
	w(`    apt-get clean; \`)
	w(`    rm -rf /var/lib/apt/lists/* /etc/dpkg/dpkg.cfg.d/airlock-build`)
	w(`RUN set -eu; \`)
	w(`    curl -fsSL -o /tmp/npm.tgz https://registry.npmjs.org/npm/-/npm-%s.tgz; \`, npmVersion)
	w(`    echo "%s  /tmp/npm.tgz" | sha512sum -c --quiet -; \`, npmSHA512)
	w(`    mkdir -p /usr/lib/node_modules/npm; \`)
	w(`    tar -xzf /tmp/npm.tgz -C /usr/lib/node_modules/npm --strip-components=1 --no-same-owner; \`)
	w(`    rm /tmp/npm.tgz; \`)
	ln := "ln -s"
	if dev {
		ln = "ln -sf" // the image may have its own
	}
	w(`    %s ../lib/node_modules/npm/bin/npm-cli.js /usr/bin/npm; \`, ln)
	w(`    %s ../lib/node_modules/npm/bin/npx-cli.js /usr/bin/npx; \`, ln)
	// npm's built-in config: the global one at /etc/npmrc, where Debian's
	// npm keeps it, whatever prefix the agent sets for its own installs.
	w(`    echo globalconfig=/etc/npmrc >/usr/lib/node_modules/npm/npmrc`)
	w(`RUN npm config set --global cafile %s && \`, caBundle)
	w(`    git config --system http.sslCAInfo %s`, caBundle)
	if dev {
		// The user first: features may install for it (_REMOTE_USER).
		devLayers(w, spec.dev)
	}
	b.WriteString(spec.Agent.Install(spec.Version))
	if !dev {
		w(`RUN groupadd --gid 1000 agent && \`)
		w(`    useradd --uid 1000 --gid 1000 --create-home --home-dir /home/agent --shell /bin/bash agent && \`)
		w(`    mkdir -p /workspace /opt/agent/bin /opt/agent/lib && chown agent:agent /workspace && \`)
		w(`    chmod 1777 /opt/agent /opt/agent/bin /opt/agent/lib`)
	}
	// HOME is explicit because the container often runs as the invoking
	// user's uid, which has no passwd entry in the image.
	w("ENV HOME=/home/agent \\")
	w("    NPM_CONFIG_PREFIX=/opt/agent \\")
	w("    DISABLE_AUTOUPDATER=1")
	w("USER agent")
	w("WORKDIR /workspace")
	w(`ENTRYPOINT ["/usr/bin/tini", "--"]`)
	w(`CMD ["bash"]`)
	return b.String()
}
