#!/bin/sh
# Builds every libFuzzer target tests/fuzz/fuzz_*.c with clang (ASan and
# UBSan, no recovery) and runs each for a few seconds, so that make check
# catches a target that no longer builds and any crash a short run finds.
# Long runs are done by hand (see each target's header). TAP output, one
# line per target, with the number of executions.
#
# A target names what it links in its header comment, one line each:
#    * SOURCES: src/json.c src/util.c ...   (relative to the source tree)
#    * LIBS: -lcrypto                         (optional; @BUILD@ stands for
#      the build tree, @LLHTTP_LIBS@ for the system llhttp when configure
#      found one, e.g. "@BUILD@/src/libllhttp.a @LLHTTP_LIBS@")
# Seeds, if any, are read from tests/fuzz/corpus/<target>/ (never written);
# a crashing input is kept as tests/fuzz/<target>-crash-* in the build tree.
#
# Environment (make check sets the first four): ROTOR_SRCDIR, ROTOR_BUILDDIR
# (where config.h is), ROTOR_FUZZ_CPPFLAGS (llhttp's -I), ROTOR_FUZZ_LLHTTP_LIBS
# (a system llhttp's -l), FUZZ_SECONDS (per target, default 5), FUZZ_CC
# (default clang). Without clang, or without
# libFuzzer (Debian: libclang-rt-14-dev), the plan is "1..0 # SKIP".
set -u

src=${ROTOR_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${ROTOR_BUILDDIR:-$src}
secs=${FUZZ_SECONDS:-5}
cc=${FUZZ_CC:-clang}
cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
cppflags="-D_GNU_SOURCE -I$build -I$src/src -I$src/src/transport -I$src/src/engine -I$src/src/proxy -I$src/shm ${ROTOR_FUZZ_CPPFLAGS:--I/usr/share/include/llhttp}"

if ! command -v "$cc" >/dev/null 2>&1; then
	echo "1..0 # SKIP $cc is not installed"
	exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rotor-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n' >"$tmp/probe.c"
if ! "$cc" $cflags "$tmp/probe.c" -o "$tmp/probe" >"$tmp/probe.log" 2>&1; then
	echo "1..0 # SKIP $cc cannot link -fsanitize=fuzzer (Debian: libclang-rt-14-dev)"
	exit 0
fi

# The header line "* KEY: value" of target $1.
header() {
	sed -n "s/^ \* $2: *//p" "$1" | head -n 1
}

# Build every target at once; each in the background, into $tmp.
targets=
for f in "$src"/tests/fuzz/fuzz_*.c; do
	[ -f "$f" ] || continue
	name=$(basename "$f" .c)
	targets="$targets $name"
	sources=
	for s in $(header "$f" SOURCES); do
		sources="$sources $src/$s"
	done
	libs=$(header "$f" LIBS | sed -e "s|@BUILD@|$build|g" -e "s|@LLHTTP_LIBS@|${ROTOR_FUZZ_LLHTTP_LIBS:-}|g")
	# shellcheck disable=SC2086 # word splitting of the flag lists is wanted
	"$cc" $cflags $cppflags "$f" $sources $libs -o "$tmp/$name" \
		>"$tmp/$name.build" 2>&1 &
done
wait

n=0 failed=0
echo "1..$(echo $targets | wc -w)"
for name in $targets; do
	n=$((n + 1))
	if [ ! -x "$tmp/$name" ]; then
		echo "not ok $n - $name: does not build"
		sed 's/^/# /' "$tmp/$name.build" | tail -n 30
		failed=1
		continue
	fi
	mkdir -p "$tmp/corpus-$name" "$build/tests/fuzz"
	seeds=
	[ -d "$src/tests/fuzz/corpus/$name" ] && seeds="$src/tests/fuzz/corpus/$name"
	# shellcheck disable=SC2086
	if (cd "$tmp" && "./$name" -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$build/tests/fuzz/$name-" "corpus-$name" $seeds) >"$tmp/$name.log" 2>&1; then
		runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$tmp/$name.log")
		echo "ok $n - $name: ${runs:-?} executions in ${secs}s, no crash"
	else
		echo "not ok $n - $name: crashed or failed (libFuzzer output below; the input is kept as $build/tests/fuzz/$name-*)"
		grep -v '^#[0-9]' "$tmp/$name.log" | tail -n 40 | sed 's/^/# /'
		failed=1
	fi
done
exit $failed
