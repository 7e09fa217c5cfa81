#!/bin/sh
# Installs the Debian packages sfnet needs that are missing (make deps; make build/test/demo run it first).
# As root: apt-get directly (every Docker user is root, and there is often no sudo).
# As a user with sudo: through sudo. Otherwise: says exactly what to run, and fails.
# Usage: scripts/deps.sh PACKAGE...
set -u
missing=""
for p in "$@"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing Debian packages:$missing"
if [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing && exit 0
  echo "error: apt-get could not install:$missing" >&2
  exit 1
fi
if command -v sudo >/dev/null 2>&1; then
  # env passes DEBIAN_FRONTEND through sudo, which resets the environment otherwise.
  sudo apt-get update -qq && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing && exit 0
  echo "error: sudo apt-get could not install:$missing" >&2
  exit 1
fi
echo "error: these Debian packages are missing and this user is not root and has no sudo:$missing" >&2
echo "hint: as root, run: apt-get update && apt-get install -y$missing" >&2
exit 1
