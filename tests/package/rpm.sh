#!/bin/sh
# tests/package/rpm.sh - builds rotor's RPM on Debian (contrib/package.sh rpm:
# rpmbuild --nodeps with contrib/rpm/debian.macros) and checks what can be
# checked without a Fedora/EL system: the spec parses, the version is
# configure's, the file list is exactly the expected one with the expected
# owners and modes, the shared unit is the one shipped, and the scriptlets
# create the user, generate the config and upgrade without a stop. It
# installs nothing (Debian's rpm must not install packages). TAP output.
#
#   ROTOR_BUILDDIR  a configured build directory (default: the current one)
#   ROTOR_RPM       test this .rpm instead of building one
set -u

builddir=${ROTOR_BUILDDIR:-$PWD}
srcdir=${ROTOR_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
spec=$srcdir/contrib/rpm/rotor.spec

for t in rpmbuild rpmspec rpm2cpio cpio; do
	command -v "$t" >/dev/null 2>&1 || { echo "1..0 # SKIP $t is not installed"; exit 0; }
done

. "$(dirname "$0")/tap.sh"
tmp=
trap '[ -n "$tmp" ] && rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

macros=$srcdir/contrib/rpm/debian.macros
ok "rpmspec parses the spec" rpmspec --load "$macros" -P "$spec"

t0=$(date +%s)
if [ -n "${ROTOR_RPM:-}" ]; then
	rpm=$(cd "$(dirname "$ROTOR_RPM")" && pwd)/$(basename "$ROTOR_RPM")
else
	# The unit tests ran in make check already: --nocheck.
	(cd "$builddir" && sh "$srcdir/contrib/package.sh" rpm --nocheck) >&2 ||
		bail "contrib/package.sh rpm failed"
	rpm=$(ls "$builddir"/build/rpm/RPMS/*/rotor-[0-9]*.rpm | head -n 1)
fi
[ -f "$rpm" ] || bail "no .rpm"
echo "# $(basename "$rpm") in $(($(date +%s) - t0)) s"

q() { rpm -qp --nosignature "$@" "$rpm" 2>/dev/null; }
ok "the package's version is configure's" \
	test "$(q --qf '%{VERSION}')" = "$(sed -n 's/^PACKAGE_VERSION = //p' "$builddir/Makefile")"

# Exactly these paths (man pages compressed or not, as the platform does).
expected="/etc/logrotate.d/rotor
/etc/rotor
/etc/rotor/config.json
/usr/bin/rotorctl
/usr/lib/systemd/system/rotor.service
/usr/lib/sysusers.d/rotor.conf
/usr/sbin/rotord
/usr/share/doc/rotor
/usr/share/doc/rotor/README
/usr/share/man/man1/rotorctl.1
/usr/share/man/man5/rotor.conf.5
/usr/share/man/man8/rotord.8
/usr/share/rotor
/usr/share/rotor/admin
/usr/share/rotor/admin/admin.css
/usr/share/rotor/admin/admin.js
/usr/share/rotor/admin/index.html
/var/lib/rotor
/var/log/rotor"
# Debian's rpm names the doc directory rotor-<version>, Fedora's rotor.
tmp=$(mktemp -d /tmp/rotor-rpm-test.XXXXXX)
printf '%s\n' "$expected" >"$tmp/expected"
q -l | sed 's/\.\(gz\|bz2\|xz\)$//; s|^/usr/share/doc/rotor-[0-9.]*|/usr/share/doc/rotor|' |
	grep -v '^/usr/lib/\.build-id' | sort >"$tmp/got"
ok "rpm -qlp lists exactly the expected files" diff -u "$tmp/expected" "$tmp/got"

# path mode user group, from rpm --dump-like query tags.
attrs=$(q --qf '[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags}\n]')
has() { printf '%s\n' "$attrs" | grep -qx "$1"; }
ok "/etc/rotor is drwxr-x--- root rotor" has '/etc/rotor drwxr-x--- root rotor '
ok "config.json is a %ghost %config(noreplace) -rw-r----- root rotor" \
	has '/etc/rotor/config.json -rw-r----- root rotor cng'
ok "/var/lib/rotor is drwxr-x--- rotor rotor" has '/var/lib/rotor drwxr-x--- rotor rotor '
ok "/var/log/rotor is drwxr-s--- rotor adm" has '/var/log/rotor drwxr-s--- rotor adm '
ok "the logrotate file is %config(noreplace)" has '/etc/logrotate.d/rotor -rw-r--r-- root root cn'
ok "rotord is root's and executable" has '/usr/sbin/rotord -rwxr-xr-x root root '

(cd "$tmp" && rpm2cpio "$rpm" | cpio -idm --quiet) || bail "rpm2cpio failed"
ok "the unit is contrib/systemd/rotor.service" \
	cmp "$tmp/usr/lib/systemd/system/rotor.service" "$srcdir/contrib/systemd/rotor.service"
ok "the sysusers file is contrib/systemd/rotor.sysusers" \
	cmp "$tmp/usr/lib/sysusers.d/rotor.conf" "$srcdir/contrib/systemd/rotor.sysusers"
ok "the logrotate file is contrib/rotor.logrotate" \
	cmp "$tmp/etc/logrotate.d/rotor" "$srcdir/contrib/rotor.logrotate"
ok "the payload's rotord runs (-v)" sh -c "'$tmp/usr/sbin/rotord' -v | grep -q '^rotor v'"
ok "the payload ships no config.json" test ! -e "$tmp/etc/rotor/config.json"

scripts=$(q --scripts)
# The body of scriptlet $1 (preinstall, postinstall, preuninstall, postuninstall).
scriptlet() { printf '%s\n' "$scripts" | awk -v s="$1" '/^[a-z]+ scriptlet/ { on = ($1 == s) } on'; }
ok "%pre creates the rotor group and system user" \
	sh -c 'printf "%s\n" "$1" | grep -q "groupadd -r rotor" && printf "%s\n" "$1" | grep -q "useradd -r -g rotor -d /var/lib/rotor"' - "$(scriptlet preinstall)"
post=$(scriptlet postinstall)
ok "%post generates the config only when there is none" \
	sh -c 'printf "%s\n" "$1" | grep -q "if \[ ! -e /etc/rotor/config.json \]" && printf "%s\n" "$1" | grep -q "rotorctl genconfig"' - "$post"
ok "%post makes it 0640 root:rotor and checks it with rotord -t" \
	sh -c 'printf "%s\n" "$1" | grep -q "chown root:rotor" && printf "%s\n" "$1" | grep -q "chmod 0640" && printf "%s\n" "$1" | grep -q "rotord -t"' - "$post"
ok "%post points history at /var/lib/rotor" \
	sh -c 'printf "%s\n" "$1" | grep -q "\"data_dir\": \"/var/lib/rotor\""' - "$post"
postun=$(scriptlet postuninstall)
ok "%postun upgrades with rotorctl upgrade, else try-restart" \
	sh -c 'printf "%s\n" "$1" | grep -q "rotorctl upgrade -c /etc/rotor/config.json" && printf "%s\n" "$1" | grep -q "try-restart rotor.service"' - "$postun"
ok "no scriptlet stops the service on upgrade" \
	sh -c '! printf "%s\n" "$1" | grep -Eq "systemctl (stop|restart) "' - "$scripts"

# %post's config generation, run for real against the payload: the sed must
# leave a config that rotord accepts.
mkdir -p "$tmp/gen"
ok "%post's generated config passes rotord -t" sh -c "
	'$tmp/usr/bin/rotorctl' genconfig -c '$tmp/gen/c.json' >/dev/null &&
	sed -i '1s|^{\$|{\n  \"shm\": {\"data_dir\": \"/var/lib/rotor\"},|' '$tmp/gen/c.json' &&
	grep -q '\"data_dir\": \"/var/lib/rotor\"' '$tmp/gen/c.json' &&
	'$tmp/usr/sbin/rotord' -t -c '$tmp/gen/c.json'"

if command -v rpmlint >/dev/null 2>&1; then
	# Advisory on Debian (Debian's paths and sonames): reported, not judged.
	rpmlint "$spec" "$rpm" 2>&1 | sed 's/^/# rpmlint: /' | tail -n 30
fi

echo "1..$n"
exit $failed
