#!/usr/bin/env bash
# helm for the chart tests (test/chart*_test.go) and `make chart-package`,
# found or built once, outside any `go test -timeout`.
#
# helm is not a module dependency and no release binary can be downloaded
# here (only the Go module proxy, Debian and npm are reachable), so it is
# built with `go install` from the module proxy into the user cache,
# ${XDG_CACHE_HOME:-~/.cache}/wsgate-test/helm-<version>/helm, and reused by
# every later run. A cold build took 6 min wall clock on the 2-core box
# (129 s user + 29 s system CPU, downloads included, other builds running);
# that is why `make test` starts it first, in the background, so it overlaps
# the services' setup and the Go test build.
#
#   bash test/setup-helm.sh              find or build, then print helm's path
#   bash test/setup-helm.sh --background return at once; build detached if needed
#   bash test/setup-helm.sh --wait       wait for a background build, print the
#                                        path; exit 1 when there is no helm and
#                                        no build running (never builds itself)
#
# A helm on PATH (or WSGATE_HELM) is used as it is.
set -euo pipefail

# Keep in step with test/chart_test.go's expectations (helm 3 CLI).
HELM_VERSION=v3.19.5

cache="${XDG_CACHE_HOME:-$HOME/.cache}/wsgate-test/helm-$HELM_VERSION"
bin="$cache/helm"
marker="$cache/building" # holds the builder's pid while it runs
log="$cache/build.log"

found() {
	if [[ -n "${WSGATE_HELM:-}" && -x "${WSGATE_HELM}" ]]; then
		echo "$WSGATE_HELM"
	elif command -v helm >/dev/null 2>&1; then
		command -v helm
	elif [[ -x "$bin" ]]; then
		echo "$bin"
	else
		return 1
	fi
}

building() {
	[[ -f "$marker" ]] && kill -0 "$(cat "$marker" 2>/dev/null)" 2>/dev/null
}

build() {
	mkdir -p "$cache"
	# One builder at a time (two `make test` at once): the second waits
	# here, then finds the binary.
	exec 9>"$cache/lock"
	flock 9
	if [[ -x "$bin" ]]; then
		return 0
	fi
	echo $$ >"$marker"
	trap 'rm -f "$marker"' EXIT
	local tmp start
	tmp=$(mktemp -d "$cache/build-XXXXXX")
	start=$(date +%s)
	echo "setup-helm: building helm $HELM_VERSION with go install (cold: several minutes)" >&2
	# Outside this module (helm is not one of its dependencies), into a
	# directory of our own, renamed into place: nobody sees half a binary.
	# Without symbols (-s -w: a shorter link). It shares a cold 2-core
	# machine with the test builds; the chart tests, which need helm, run
	# last (t.Parallel). At nice 19 it finished two minutes later and the
	# run was no shorter (689 s against 638 s), so it runs at the normal
	# priority.
	(cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath -ldflags='-s -w' "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
	mv "$tmp/helm" "$bin"
	rm -rf "$tmp"
	echo "setup-helm: built $bin in $(($(date +%s) - start))s" >&2
}

case "${1:-}" in
"")
	found || { build && echo "$bin"; }
	;;
--background)
	if found >/dev/null || building; then
		exit 0
	fi
	mkdir -p "$cache"
	# Detached, so make goes on; the marker is written before returning so
	# that a --wait right after sees the build.
	setsid nohup bash "$0" --build >"$log" 2>&1 </dev/null &
	echo $! >"$marker"
	echo "setup-helm: building helm $HELM_VERSION in the background (log: $log)" >&2
	;;
--build)
	build
	;;
--wait)
	deadline=$(($(date +%s) + ${WSGATE_HELM_WAIT_SECONDS:-900}))
	while ! found >/dev/null && building; do
		if (($(date +%s) > deadline)); then
			echo "setup-helm: gave up waiting for the helm build (log: $log)" >&2
			exit 1
		fi
		sleep 2
	done
	if ! found; then
		echo "setup-helm: no helm: not on PATH, not in $cache, no build running; run \`bash test/setup-helm.sh\` (or \`make helm\`)" >&2
		[[ -f "$log" ]] && tail -20 "$log" >&2
		exit 1
	fi
	;;
*)
	echo "usage: $0 [--background|--wait]" >&2
	exit 2
	;;
esac
