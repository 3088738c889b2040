#!/bin/sh
# Lints every man page with mandoc -Tlint; any message at WARNING level or
# above fails. TAP output, one line per page.
n=0 failed=0
if [ -z "${MANDOC:-}" ] && ! command -v mandoc >/dev/null 2>&1; then
	echo "1..0 # SKIP mandoc is not installed"
	exit 0
fi
mandoc=${MANDOC:-mandoc}
for page in "$ROTOR_SRCDIR"/man/*.[158]; do
	n=$((n + 1))
	out=$("$mandoc" -Tlint -W warning "$page" 2>&1)
	if [ -z "$out" ]; then
		echo "ok $n - mandoc -Tlint $(basename "$page")"
	else
		echo "not ok $n - mandoc -Tlint $(basename "$page")"
		echo "$out" | sed 's/^/# /'
		failed=1
	fi
done
echo "1..$n"
exit $failed
