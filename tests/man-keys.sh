#!/bin/sh
# man-keys.sh - TAP: rotor.conf(5) documents every key of the key table.
# The keys come from `rotorctl configdoc` (one key per line, the name first,
# tab-separated); each must have an ".It Cm KEY" entry in man/rotor.conf.5.
# Run by make check with ROTOR_BUILDDIR and ROTOR_SRCDIR set.
builddir=${ROTOR_BUILDDIR:-.}
srcdir=${ROTOR_SRCDIR:-.}
rotorctl=$builddir/src/rotorctl
man=$srcdir/man/rotor.conf.5

if [ ! -r "$man" ]; then
	echo "Bail out! $man is missing"
	exit 1
fi
keys=$("$rotorctl" configdoc) || {
	echo "Bail out! $rotorctl configdoc failed"
	exit 1
}
if [ -z "$keys" ]; then
	echo "Bail out! $rotorctl configdoc printed no keys"
	exit 1
fi

printf '%s\n' "$keys" | awk -F '\t' -v man="$man" '
BEGIN {
	while ((getline line < man) > 0)
		if (line ~ /^\.It Cm [^ ]+$/)
			documented[substr(line, 8)] = 1
	close(man)
}
$1 != "" {
	n++
	if ($1 in documented) {
		printf "ok %d - rotor.conf.5 documents %s\n", n, $1
	} else {
		printf "not ok %d - rotor.conf.5 documents %s\n", n, $1
		failed++
	}
}
END {
	printf "1..%d\n", n
	exit failed ? 1 : 0
}'
