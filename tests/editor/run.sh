#!/bin/sh
# ctest's editor_e2e_test: the extension in a real VS Code (code-server), in Debian's Chromium.
# The build installs code-server into tests/editor/node_modules (prepare.sh, then npm ci) when
# node is version 20, the only one code-server 4.100.3's install accepts. With another node
# there is no VS Code build to run, and the test says so and is skipped (exit 77).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" != 20 ]; then
  echo "editor_e2e_test: skipped: code-server 4.100.3 installs only with node 20, and this is node $major" >&2
  exit 77
fi
if [ ! -e "$here/node_modules/code-server/out/node/entry.js" ]; then
  echo "editor_e2e_test: code-server is not installed in $here/node_modules (the build does it: make build)" >&2
  exit 1
fi
exec node --test --test-reporter=spec "$here/editor_e2e.mjs"
