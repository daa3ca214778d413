#!/usr/bin/env bash
# The project's one test command (README: ./hack/test.sh; CI: .ci/run).
#
# Works on a fresh machine: installs redis-server/redis-cli (and a C
# compiler for -race) with apt-get when they are missing and it can. The
# tests themselves start private redis-server processes on free 127.0.0.1
# ports (internal/testredis) and stop them; no Redis already running on the
# machine (6379 or elsewhere) is used.
#
# Extra arguments are passed to `go test`, e.g. ./hack/test.sh -run Redis -v
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'hack/test.sh: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go (see go.mod for the version)"

# apt_install PKG... installs Debian/Ubuntu packages as root, or through
# password-less sudo; anything else is an error that says what to install.
apt_install() {
	local sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			die "missing $*: install them (Debian/Ubuntu: apt-get install -y $*; macOS: brew install redis) or rerun as root"
		fi
	fi
	command -v apt-get >/dev/null 2>&1 || die "missing $* and no apt-get here: install them with your package manager"
	log "installing $* with apt-get"
	# ${sudo[@]+...}: an empty array is "unbound" under set -u in bash < 4.4.
	${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -q
	${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
	apt_install redis-server redis-tools
	command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 ||
		die "redis-server/redis-cli still not on PATH after installing"
fi

# -race needs cgo, hence a C compiler (without one Go quietly turns cgo off).
cc=$(go env CC)
if ! command -v "${cc%% *}" >/dev/null 2>&1; then
	apt_install gcc libc6-dev
fi
export CGO_ENABLED=1

log "$(go version)"
log "$(redis-server --version)"

# SQL storage tests (gf gdb link syntax); set these to point elsewhere.
export GFSESSION_TEST_MYSQL="${GFSESSION_TEST_MYSQL:-mysql:root:@tcp(127.0.0.1:3306)/test}"
export GFSESSION_TEST_PGSQL="${GFSESSION_TEST_PGSQL:-pgsql:postgres:@tcp(127.0.0.1:5432)/test}"

log "go test -race -count=1 -timeout 30m ./... $*"
go test -race -count=1 -timeout 30m ./... "$@"

# go.mod requires the lowest gf the module supports, so the run above tests
# that one. The config hook rests on gf internals (gconv's converter for
# ghttp.ServerConfig, how g.Server applies its config node), so its tests
# also run against the newest gf supported, through a temporary copy of
# go.mod (-modfile; go.mod and go.sum stay untouched). Skipped when
# arguments select a run of their own.
gf_newest=v2.10.2
if [[ $# -eq 0 ]]; then
	modfile_dir=$(mktemp -d)
	trap 'rm -rf "$modfile_dir"' EXIT
	cp go.mod go.sum "$modfile_dir/"
	go mod edit \
		-require="github.com/gogf/gf/v2@$gf_newest" \
		-require="github.com/gogf/gf/contrib/nosql/redis/v2@$gf_newest" \
		-require="github.com/gogf/gf/contrib/drivers/mysql/v2@$gf_newest" \
		-require="github.com/gogf/gf/contrib/drivers/pgsql/v2@$gf_newest" \
		-require="github.com/gogf/gf/contrib/drivers/sqlite/v2@$gf_newest" \
		"$modfile_dir/go.mod"
	go mod tidy -modfile="$modfile_dir/go.mod"
	hook_tests='^(TestRegister|TestNew_Config|TestServerConfigHook|TestServer_)'
	log "gf $gf_newest: go test -race -count=1 -run '$hook_tests' ."
	go test -modfile="$modfile_dir/go.mod" -race -count=1 -timeout 10m -run "$hook_tests" .

	# The real-browser test of the example: a module of its own (chromedp
	# stays out of gfsession's go.mod), with Debian's chromium.
	if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
		apt_install chromium
	fi
	log "hack/browser: go test -race -count=1 ./... (headless Chromium)"
	(cd hack/browser && go test -race -count=1 -timeout 10m ./...)
fi
