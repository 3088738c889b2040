# tests/package/tap.sh - TAP helpers of the package tests, sourced by
# deb.sh and rpm.sh. They set n and failed, which the script reports.

n=0 failed=0
# ok DESCRIPTION COMMAND...: one TAP line for the command's exit status.
ok() {
	desc=$1
	shift
	n=$((n + 1))
	if out=$("$@" 2>&1); then
		echo "ok $n - $desc"
	else
		echo "not ok $n - $desc"
		[ -n "$out" ] && printf '%s\n' "$out" | sed 's/^/# /'
		failed=1
	fi
}
# Gives up: the remaining checks cannot run.
bail() {
	echo "Bail out! $*"
	exit 1
}
