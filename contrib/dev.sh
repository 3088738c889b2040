#!/bin/sh
# contrib/dev.sh - the README's commands. On a fresh Debian 12 machine each
# one installs what is missing (apt-get, npm), bootstraps, configures and
# builds; all are idempotent.
#
#   contrib/dev.sh run     build, make a development config (dev/config.json)
#                          if none exists, print how to connect, and run rotord
#                          in the foreground on 127.0.0.1:8000
#   contrib/dev.sh test    build and run the whole test suite, then the unit,
#                          shm and integration suites again built with
#                          ASan and UBSan in build-san/; the last line is
#                          "N passed, N failed" over both; non-zero exit on
#                          failure
#   contrib/dev.sh build   only set up and build
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# Debian packages: to build, and to test (node runs the real client SDKs,
# mandoc lints the man pages, clang with libFuzzer runs tests/fuzz briefly,
# redis-server and redis-sentinel serve the Redis engine's tests, started by
# the tests themselves on free loopback ports; chromium runs the admin UI's
# browser test, driven by npm puppeteer-core).
BUILD_DEBS="build-essential autoconf automake pkg-config libev-dev libmsgpack-dev
 libjwt-dev libjansson-dev libssl-dev libhiredis-dev liburing-dev zlib1g-dev node-llhttp"
# The package tests: tests/package/deb.sh builds the .deb with dpkg-buildpackage
# and debhelper, runs lintian, and installs it in a debootstrap root;
# tests/package/rpm.sh builds the RPM with rpmbuild (package rpm).
TEST_DEBS="mandoc curl clang libclang-rt-14-dev redis-server redis-sentinel redis-tools chromium
 debhelper lintian debootstrap rpm"

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the Debian packages among "$@" that are not installed yet.
need_debs() {
	missing=
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	say "installing Debian packages:$missing"
	as_root apt-get update -qq
	DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq $missing >/dev/null
}

need_node() {
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && return 0
	need_debs nodejs npm
}

build() {
	need_debs $BUILD_DEBS
	[ -x configure ] || { say "bootstrapping (autogen.sh)"; ./autogen.sh >/dev/null 2>&1; }
	[ -f Makefile ] || { say "configuring"; ./configure -q; }
	say "building"
	make -s -j"$(nproc)" >/dev/null
}

# The npm packages the integration tests use, pinned by tests/package-lock.json.
node_deps() {
	need_node
	if [ ! -d tests/node_modules ] || [ tests/package-lock.json -nt tests/node_modules/.package-lock.json ]; then
		say "installing the tests' npm packages"
		(cd tests && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	fi
	NODE_PATH=$top/tests/node_modules
	export NODE_PATH
}

run() {
	build
	mkdir -p dev/data
	if [ ! -f dev/config.json ]; then
		src/rotorctl genconfig -c dev/config.json >/dev/null
		# Let connected clients subscribe, publish, see presence and recover
		# from history without namespaces; keep history in dev/data.
		sed -i '1s/^{/{\n  "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_client": true, "presence": true, "allow_presence_for_subscriber": true, "history_size": 100, "history_ttl": "300s", "force_recovery": true, "allow_history_for_subscriber": true}},\n  "shm": {"data_dir": "dev\/data"},/' \
			dev/config.json
		src/rotord -t -c dev/config.json >/dev/null
		say "wrote dev/config.json (rotorctl genconfig; clients may subscribe, publish, use presence and history)"
	fi
	key=$(sed -n 's/.*"key": *"\([^"]*\)".*/\1/p' dev/config.json | head -n 1)
	token=$(src/rotorctl gentoken -c dev/config.json -u dev-user -q)
	cat <<EOT

rotord is starting on http://127.0.0.1:8000 (config: dev/config.json).

Connect a client to ws://127.0.0.1:8000/connection/websocket with this
connection token for user "dev-user":

  $token

Publish through the server API:

  curl -s -X POST -H 'X-API-Key: $key' -H 'Content-Type: application/json' \\
    -d '{"channel": "news", "data": {"text": "hello"}}' http://127.0.0.1:8000/api/publish

Health: curl -s http://127.0.0.1:8000/health
Stop with Ctrl-C; reload the config with: src/rotord -c dev/config.json -p 8000 -s reload

EOT
	exec src/rotord -c dev/config.json -a 127.0.0.1 -p 8000
}

# Counts the test results automake's TAP driver recorded in the .trs files.
summarize() {
	pass=0 fail=0 skip=0
	for f in $(find . -name '*.trs' -not -path './rotor-*' -not -path './build/*'); do
		p=$(grep -c '^:test-result: PASS' "$f" || true)
		x=$(grep -c '^:test-result: XFAIL' "$f" || true)
		s=$(grep -c '^:test-result: SKIP' "$f" || true)
		e=$(grep -c '^:test-result: \(FAIL\|XPASS\|ERROR\)' "$f" || true)
		pass=$((pass + p + x)) skip=$((skip + s)) fail=$((fail + e))
	done
	if [ "$skip" -gt 0 ]; then
		echo "$pass passed, $fail failed, $skip skipped"
	else
		echo "$pass passed, $fail failed"
	fi
	[ "$fail" -eq 0 ]
}

# Runs the TAP script $1 through automake's TAP driver, so that its results
# land in $1's .log and .trs like make check's; prints what did not pass.
tap_script() {
	t=$1
	rc=0
	env AM_TAP_AWK=awk sh build-aux/tap-driver.sh --test-name "$t" \
		--log-file "${t%.sh}.log" --trs-file "${t%.sh}.trs" --color-tests no \
		--enable-hard-errors yes --expect-failure no -- sh "$t" >/tmp/rotor-tap.$$ 2>&1 || rc=$?
	grep -v '^PASS' /tmp/rotor-tap.$$ || true
	rm -f /tmp/rotor-tap.$$
	grep -q '^:test-result: \(FAIL\|ERROR\|XPASS\)' "${t%.sh}.trs" && status=1
	[ "$rc" -eq 0 ] || status=$rc
}

# The sanitizer build: the distribution's files (make distdir copies them
# with their times, so a rebuild is incremental) in build-san/rotor,
# configured with --enable-sanitizers in build-san/build (VPATH: the source
# tree itself is configured already, which a VPATH build of it refuses).
build_san() {
	say "building with ASan and UBSan (build-san/)"
	mkdir -p build-san
	make -s distdir distdir=build-san/rotor >/dev/null
	mkdir -p build-san/build
	(cd build-san/build &&
		{ [ -f Makefile ] || ../rotor/configure -q --enable-sanitizers; } &&
		make -s -j"$(nproc)" >/dev/null)
}

# make check in directory $1 with make options $2...: prints what did not
# pass; status becomes non-zero if it failed, broken if it stopped before
# running the tests (a test did not build).
check_in() {
	dir=$1
	shift
	rc=0
	make -C "$dir" -s check "$@" >/tmp/rotor-check.$$ 2>&1 || rc=$?
	grep -E '^(PASS|FAIL|ERROR|SKIP|XPASS|XFAIL):|^# ' /tmp/rotor-check.$$ | grep -v '^PASS' || true
	if [ "$rc" -ne 0 ] && ! grep -q '^# TOTAL' /tmp/rotor-check.$$; then
		say "make check in $dir failed before running the tests:"
		grep -E 'error|Error' /tmp/rotor-check.$$ | head -n 20 >&2
		broken=$((broken + 1))
	fi
	rm -f /tmp/rotor-check.$$
	[ "$rc" -eq 0 ] || status=$rc
}

test_all() {
	build
	need_debs $TEST_DEBS
	node_deps
	find . -name '*.trs' -not -path './rotor-*' -not -path './build/*' -delete
	status=0 broken=0
	say "running the test suite (make check)"
	check_in . -j"$(nproc)"
	if build_san; then
		# One test at a time: the daemon is several times slower under
		# the sanitizers, and the suite's timing-bound tests need the CPU.
		say "running the unit, shm and integration suites under ASan and UBSan"
		check_in build-san/build -j1
	else
		say "the sanitizer build failed"
		status=1 broken=$((broken + 1))
	fi
	# About 2.5 minutes (the first run also debootstraps a root from the
	# Debian mirror into /var/cache/rotor-test, about 5 minutes, once),
	# and 1 minute for the RPM.
	say "building the .deb and testing it in a fresh Debian root (tests/package/deb.sh)"
	ROTOR_BUILDDIR=$top ROTOR_SRCDIR=$top tap_script tests/package/deb.sh
	say "building the RPM and checking it (tests/package/rpm.sh)"
	ROTOR_BUILDDIR=$top ROTOR_SRCDIR=$top tap_script tests/package/rpm.sh
	if [ "$status" -ne 0 ]; then
		for log in $(grep -l '^:test-result: \(FAIL\|ERROR\|XPASS\)' $(find . -name '*.trs' -not -path './rotor-*' -not -path './build/*')); do
			say "failed: ${log%.trs}.log"
			tail -n 40 "${log%.trs}.log" >&2
		done
	fi
	if [ "$broken" -gt 0 ]; then
		summarize >/dev/null
		echo "$pass passed, $((fail + broken)) failed"
		return 1
	fi
	summarize && [ "$status" -eq 0 ]
}

case "${1:-}" in
run) run ;;
test) test_all ;;
build) build ;;
*) echo "usage: contrib/dev.sh run|test|build" >&2; exit 2 ;;
esac
