# SPDX-License-Identifier: MIT
# Build, test and install the three Teredo daemons.
#
#   make check    the README's test command: install test deps, build, lint, test
#   make build    static binaries in bin/
#   make test     everything CI runs (unit, fuzz seeds, e2e in namespaces when root)
#   make lint     gofmt, go vet, staticcheck
#   make fuzz     each fuzz target for FUZZTIME (bounded)
#   make faults   the fault suite, Debian's Miredo timed beside ours (root)
#   make soak     server, relay and 20 clients for SOAKTIME, sampled (root)
#   make fuzz-long  the long campaign (not in CI): each target for FUZZLONG
#                 (10m), -parallel FUZZPARALLEL (1), a line per target
#                 appended to FUZZLONG_OUT (fuzz-long.txt); scripts/fuzz-long.sh
#   make demo     a whole Teredo network in namespaces (needs root)
#   make install  PREFIX=/usr/local DESTDIR= (binaries and man pages)
#   make package  .deb and .rpm of each role in dist/ (nfpm)

GO        ?= go
PREFIX    ?= /usr/local
DESTDIR   ?=
SBINDIR   ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
MANDIR    ?= $(PREFIX)/share/man
# The user the installed units run the daemons as (--user); the packages
# create it.
DAEMON_USER ?= miredo
DIST      ?= dist
FUZZTIME  ?= 10s
FUZZLONG  ?= 10m
FUZZPARALLEL ?= 1
FUZZLONG_OUT ?= $(CURDIR)/fuzz-long.txt
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BINARIES  := miredo-client miredo-relay miredo-server
LDFLAGS   := -s -w -X github.com/miredo-go/miredo/pkg/buildinfo.Version=$(VERSION)
TESTFLAGS ?=

export CGO_ENABLED := 0

.PHONY: all build check deps test unit lint fuzz demo install package clean

all: build

build: $(addprefix bin/,$(BINARIES))

bin/%: FORCE
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/$*

.PHONY: FORCE
FORCE:

# The README's test command on a fresh Debian machine with Go (as root).
check: deps build lint test

# Also builds nfpm, the packaging tool (over a minute the first time), so
# that the package test does not.
deps:
	./scripts/install-deps.sh
	$(GO) mod download
	$(GO) tool nfpm --version >/dev/null

# Everything CI tests. e2e tests are built in with the e2e tag and run
# when root (CI is root); without root they skip and say why.
test:
	$(GO) vet ./...
	$(GO) test -count=1 -tags e2e $(TESTFLAGS) ./...

# Unit tests only: no root, no namespaces.
unit:
	$(GO) test -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags e2e ./...

# Runs every fuzz target for FUZZTIME each; go test allows one target per run.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# The long campaign: every target in turn, a results line per target
# (execs, new inputs, PASS/FAIL and the crasher's file).
.PHONY: fuzz-long
fuzz-long:
	GO='$(GO)' FUZZLONG='$(FUZZLONG)' FUZZPARALLEL='$(FUZZPARALLEL)' FUZZLONG_OUT='$(FUZZLONG_OUT)' ./scripts/fuzz-long.sh

demo: deps build
	./scripts/demo.sh

# The relay reads miredo.conf(5)'s format from its own file; its copy of
# the page is named after that file, so that a relay host (which may have
# Miredo's own miredo.conf(5)) has it too.
install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(addprefix bin/,$(BINARIES)) $(DESTDIR)$(SBINDIR)/
	install -m 0644 packaging/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 packaging/man/*.5 $(DESTDIR)$(MANDIR)/man5/
	sed 's/^\.TH MIREDO\.CONF /.TH MIREDO-RELAY.CONF /' packaging/man/miredo.conf.5 > $(DESTDIR)$(MANDIR)/man5/miredo-relay.conf.5
	chmod 0644 $(DESTDIR)$(MANDIR)/man5/miredo-relay.conf.5

# miredo-go-{client,relay,server} .deb and .rpm in $(DIST), built with nfpm
# (packaging/package.sh; PKG_VERSION defaults to one from git describe).
package: build
	GO='$(GO)' MAKE='$(MAKE)' DIST='$(DIST)' PKG_VERSION='$(PKG_VERSION)' PKG_STAGE='$(PKG_STAGE)' ./packaging/package.sh

# The fault suite with Debian's Miredo timed beside ours under each fault
# (needs root; CI runs ours only).
.PHONY: faults
faults:
	$(GO) test -count=1 -tags e2e -v -timeout 60m ./internal/faults -args -full

# The soak for SOAKTIME (CI runs it for 2 minutes): server, relay and 20
# clients under traffic, churn and floods, sampled every 10 s (needs root).
SOAKTIME ?= 30m
.PHONY: soak
soak:
	$(GO) test -count=1 -tags e2e -v -timeout 2h -run '^TestSoak$$' ./internal/soak -args -duration $(SOAKTIME)

# Our miredo-server against Debian's 1.2.6 in a namespace lab (needs root);
# BENCHFLAGS go to serverbench, e.g. BENCHFLAGS='-rounds 3'.
.PHONY: bench-server
bench-server:
	./scripts/bench-server.sh $(BENCHFLAGS)

# Teredo throughput through the relay, our client and relay against Debian's
# Miredo and a kernel VXLAN ceiling, in a namespace lab (needs root);
# BENCHFLAGS go to relaybench, e.g. BENCHFLAGS='-rounds 3'.
.PHONY: bench-relay
bench-relay:
	./scripts/bench-relay.sh $(BENCHFLAGS)

# Failover of a Teredo fleet (anycast relays behind BIRD, server pools
# behind dnsmasq), ours against Debian's Miredo, in a namespace lab (needs
# root); BENCHFLAGS go to failoverbench, e.g. BENCHFLAGS='-rounds 3'.
.PHONY: bench-failover
bench-failover:
	./scripts/bench-failover.sh $(BENCHFLAGS)

# systemd units for the three daemons, with this install's SBINDIR,
# SYSCONFDIR and DAEMON_USER filled in, into $(DESTDIR)$(UNITDIR) (default
# $(PREFIX)/lib/systemd/system). Nothing is enabled or started.
.PHONY: install-units
install-units:
	@set -e; dir='$(DESTDIR)$(or $(UNITDIR),$(PREFIX)/lib/systemd/system)'; \
	install -d "$$dir"; \
	for b in $(BINARIES); do \
	  sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DAEMON_USER@|$(DAEMON_USER)|g' \
	    packaging/systemd/$$b.service.in > "$$dir/$$b.service"; \
	  chmod 0644 "$$dir/$$b.service"; \
	  echo "installed $$dir/$$b.service"; \
	done

clean:
	rm -rf bin dist build
