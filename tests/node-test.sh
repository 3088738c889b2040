#!/bin/sh
# Runs one Node.js integration test file with TAP output for make check.
# The npm packages come from NODE_PATH (contrib/dev.sh installs them in
# tests/node_modules); without node the test is skipped, never faked.
node=${NODE:-node}
if ! command -v "$node" >/dev/null 2>&1; then
	echo "1..0 # SKIP node is not installed"
	exit 0
fi
if [ -z "${NODE_PATH:-}" ] && [ -d "$ROTOR_SRCDIR/tests/node_modules" ]; then
	NODE_PATH=$ROTOR_SRCDIR/tests/node_modules
	export NODE_PATH
fi
exec "$node" --test-reporter=tap "$1"
