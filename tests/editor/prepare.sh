#!/bin/sh
# Run before `npm ci` in tests/editor. Idempotent.
#
# code-server's postinstall installs @vscode/ripgrep, whose own postinstall downloads rg from
# GitHub unless the release tarball is already in its cache, os.tmpdir()/vscode-ripgrep-cache-
# VERSION/. This machine reaches only the package registries, so we put Debian's rg there, in
# the layout the download has: a .tar.gz holding `rg` at its root.
# code-server's native modules (node-pty, kerberos, the keyring) build against Debian's
# libsecret-1-dev, libxkbfile-dev and libkrb5-dev; node-pty's build runs `npx node-gyp`,
# which needs npm_config_yes=true (the test's `npm ci` line sets it).
set -eu

ripgrep_package=1.15.11 # @vscode/ripgrep as code-server 4.100.3 pins it
ripgrep_release=v13.0.0-10

missing=""
for p in libsecret-1-dev libxkbfile-dev libkrb5-dev ripgrep; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "prepare.sh: missing Debian packages; install them with: apt-get install$missing" >&2
  exit 1
fi

case "$(uname -m)" in
  x86_64) target=x86_64-unknown-linux-musl ;;
  aarch64) target=aarch64-unknown-linux-musl ;;
  *) echo "prepare.sh: no ripgrep target for $(uname -m)" >&2; exit 1 ;;
esac

cache="${TMPDIR:-/tmp}/vscode-ripgrep-cache-$ripgrep_package"
tarball="$cache/ripgrep-$ripgrep_release-$target.tar.gz"
[ -s "$tarball" ] && exit 0

mkdir -p "$cache"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$(command -v rg)" "$stage/rg"
tar czf "$stage/rg.tar.gz" -C "$stage" rg
mv "$stage/rg.tar.gz" "$tarball"
echo "prepare.sh: cached Debian's rg as $tarball"
