#!/bin/sh
# contrib/package.sh - builds rotor's packages from the distribution tarball,
# so a package holds only what "make dist" carries (and proves EXTRA_DIST
# complete). Packaging stays at the edge: the tarball's own build never
# needs contrib/.
#
#   contrib/package.sh deb    build/deb/rotor_<version>-<rev>_<arch>.deb
#                             (contrib/debian copied to debian/ in the
#                             unpacked tarball; dpkg-buildpackage -us -uc -b;
#                             then lintian, whose errors fail the build)
#   contrib/package.sh rpm [RPMBUILD-OPTION...]
#                             build/rpm/RPMS/<arch>/rotor-<version>-*.rpm
#                             (rpmbuild --nodeps with contrib/rpm/debian.macros:
#                             on Debian this checks the spec and its file
#                             list; real RPMs come from a Fedora/EL buildroot)
#
# Run from a configured build directory (make deb / make rpm do). The
# environment variable DEB_BUILD_OPTIONS passes through (nocheck skips the
# unit tests of the package build).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-}
case "$kind" in
deb) [ $# -eq 1 ] || { echo "usage: contrib/package.sh deb" >&2; exit 2; } ;;
rpm) shift ;;
*) echo "usage: contrib/package.sh deb|rpm" >&2; exit 2 ;;
esac
[ -f Makefile ] || { echo "package.sh: run it from a configured build directory" >&2; exit 2; }

say() { printf '==> %s\n' "$*" >&2; }

version=$(sed -n 's/^PACKAGE_VERSION = //p' Makefile)
tarball=rotor-$version.tar.gz
say "making $tarball"
make -s dist-gzip >/dev/null

out=$PWD/build/$kind
rm -rf "$out"
mkdir -p "$out"

case "$kind" in
deb)
	cp "$tarball" "$out/rotor_$version.orig.tar.gz"
	(cd "$out" && tar xzf "rotor_$version.orig.tar.gz")
	cp -a "$src/contrib/debian" "$out/rotor-$version/debian"
	say "dpkg-buildpackage in $out/rotor-$version"
	(cd "$out/rotor-$version" &&
		DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" \
			dpkg-buildpackage -us -uc -b >"$out/build.log" 2>&1) || {
		tail -n 40 "$out/build.log" >&2
		say "dpkg-buildpackage failed; the whole log is $out/build.log"
		exit 1
	}
	say "lintian"
	lrc=0
	(cd "$out" && lintian --fail-on error ./rotor_*.changes) >"$out/lintian.log" 2>&1 || lrc=$?
	grep -v '^running with root privileges' "$out/lintian.log" >&2 || true
	[ "$lrc" -eq 0 ] || { say "lintian found errors (--info explains them)"; exit 1; }
	ls "$out"/rotor_*.deb
	;;
rpm)
	mkdir -p "$out/SOURCES"
	cp "$tarball" "$out/SOURCES/"
	say "rpmbuild --nodeps"
	rpmbuild --load "$src/contrib/rpm/debian.macros" --define "_topdir $out" \
		--nodeps "$@" -bb "$src/contrib/rpm/rotor.spec" >"$out/build.log" 2>&1 || {
		tail -n 40 "$out/build.log" >&2
		say "rpmbuild failed; the whole log is $out/build.log"
		exit 1
	}
	if command -v rpmlint >/dev/null 2>&1; then
		say "rpmlint (on Debian: Debian sonames and paths, advisory)"
		rpmlint "$src/contrib/rpm/rotor.spec" "$out"/RPMS/*/rotor-*.rpm >"$out/rpmlint.log" 2>&1 || true
		tail -n 1 "$out/rpmlint.log" >&2
	fi
	ls "$out"/RPMS/*/rotor-*.rpm
	;;
esac
