# wsgate developer entry points. `make run` and `make test` are the two
# commands of the README; .ci/run calls `make test`.
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The commit, for wsgate_build_info's revision label (go's own VCS stamp is
# missing under -buildvcs=false and in the image's build context).
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/wsgate/wsgate/gateway.Version=$(VERSION) -X github.com/wsgate/wsgate/gateway.Revision=$(REVISION)
# The race detector is part of every test run (DEVELOPERS.md). -vet=all
# runs every analyzer of `go vet` inside go test, on the same -race build:
# a separate `go vet ./...` compiled every dependency a second time, without
# -race, which on a cold 2-core machine cost a minute of the 10-minute budget.
TESTFLAGS ?= -race -count=1 -timeout 15m -vet=all

# BUILDFLAGS go to the gateway and its plugins alike: a plugin loads only
# into a binary built with the same flags (e.g. make build plugins BUILDFLAGS=-race).
BUILDFLAGS ?=

.PHONY: all build plugins run test services fmt vet gotest fuzz-smoke bench image image-plugins chart-test clean helm helm-start chart-package

all: build

build:
	$(GO) build $(BUILDFLAGS) -ldflags "$(LDFLAGS)" -o bin/wsgate ./cmd/wsgate

# The example plugin (the acme.rpc, acme.topic and acme.relay handlers, which
# the binary no longer compiles in); needs cgo, like Go plugins do. Load it
# with `plugins: [bin/plugins/acme.so]` and routes to acme.* (see the routes
# comment of gateway/config/default.yaml, or cmd/wsgate-bench/testdata/bench.yaml).
plugins:
	$(GO) build $(BUILDFLAGS) -buildmode=plugin -o bin/plugins/acme.so ./examples/acme/plugin

# Runs the gateway on its embedded default: PHP files sessions from
# /var/lib/php/sessions, in-memory client storage, ws on 127.0.0.1:8080,
# metrics on 127.0.0.1:9090, the default routes public/{channel} (wsgate.relay) and
# user/{username} (wsgate.user), no plugin (none needs building).
# PHP's Debian package creates the session directory; on a machine without
# PHP it is created here, with PHP's mode, so the default store can open it.
run: build
	@[ -d /var/lib/php/sessions ] || install -d -m 1733 /var/lib/php/sessions
	./bin/wsgate serve

# Everything CI runs: start finding or building helm in the background
# (test/setup-helm.sh), install/start MariaDB, PostgreSQL, Redis, Memcached
# and PHP when missing, then vet, the whole suite under the race detector
# (the chart tests wait for helm), and last the packaged chart in bin/charts.
test: helm-start services fmt gotest chart-package

services:
	bash test/setup-services.sh

# fmt: gofmt, and vet of the one package without tests (go test vets the
# others, TESTFLAGS). `make vet` is the standalone check of everything.
fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./examples/acme/plugin

vet: fmt
	$(GO) vet ./...

# go test -json through test/testsummary: each package's result line, the
# output of every failed test, and a closing summary: passed, failed and
# skipped tests per package, then every skip with its reason. pipefail
# keeps go test's own failure (a build error) from being masked by the pipe.
# ./test first: the end-to-end package is the longest to run (2.5-4 min),
# so its binary is built first and it runs while the others still build
# (on a cold 2-core machine it otherwise started 6 minutes in).
gotest:
	set -o pipefail; $(GO) test -json $(TESTFLAGS) ./test ./... | $(GO) run ./test/testsummary

# A few seconds of every fuzz target, as a smoke check beyond the seed corpus
# that `go test` already runs.
fuzz-smoke:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 10s $$pkg; \
	  done; done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Container images (Dockerfile): the static, distroless default, and the
# glibc image whose gateway and plugins are built together so they load.
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t wsgate:$(VERSION) .

image-plugins:
	docker build --target plugins --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t wsgate:$(VERSION)-plugins .

# helm for the chart tests: found on PATH or built once from the module
# proxy into ~/.cache/wsgate-test (test/setup-helm.sh), never inside a go
# test timeout. `make test` starts the build in the background first
# (helm-start) so it overlaps the services' setup and the test build; the
# chart tests wait for it.
helm:
	bash test/setup-helm.sh

helm-start:
	bash test/setup-helm.sh --background

# The chart as an installable archive, bin/charts/wsgate-<version>.tgz
# (the CI artifact; docs/kubernetes.md installs from it).
chart-package:
	@mkdir -p bin/charts
	helm=$$(bash test/setup-helm.sh --wait) && $$helm package charts/wsgate --destination bin/charts

# helm lint --strict and helm template on the defaults and every example
# values file, and the checks on the rendered manifests; part of `make test` too.
chart-test: helm
	$(GO) test $(TESTFLAGS) -run Chart ./test/

clean:
	rm -rf bin
