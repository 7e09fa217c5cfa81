#!/usr/bin/env bash
# Tests scripts/deps.sh (the `make deps` recipe) in the three situations a fresh machine can be in,
# with stand-in id/dpkg/apt-get/sudo on PATH that record what they were asked to do:
#   1. root without sudo (every Docker user): apt-get runs directly, DEBIAN_FRONTEND set;
#   2. a user with sudo: apt-get runs through sudo;
#   3. a user without sudo: nothing runs, the message says what to run as root, exit 1.
# Plus: nothing is installed when every package is present.
set -u
here="$(cd "$(dirname "$0")/.." && pwd)"
fails=0; passes=0
check() {  # check NAME CONDITION-RESULT MESSAGE
  if [ "$2" -eq 0 ]; then passes=$((passes + 1)); echo "ok   $1"; else fails=$((fails + 1)); echo "FAIL $1: $3"; fi
}
stand_ins() {  # stand_ins DIR UID HAVE_SUDO INSTALLED
  local d="$1"; mkdir -p "$d/bin"; : > "$d/log"
  printf '#!/bin/sh\n[ "$1" = "-u" ] && echo %s && exit 0\necho "uid=%s"\n' "$2" "$2" > "$d/bin/id"
  printf '#!/bin/sh\necho "dpkg $*" >> %s/log\nfor p in %s; do [ "$2" = "$p" ] && exit 0; done\nexit 1\n' "$d" "$4" > "$d/bin/dpkg"
  printf '#!/bin/sh\necho "apt-get $* DEBIAN_FRONTEND=${DEBIAN_FRONTEND:-unset}" >> %s/log\n' "$d" > "$d/bin/apt-get"
  if [ "$3" = yes ]; then printf '#!/bin/sh\necho "sudo $*" >> %s/log\nexec "$@"\n' "$d" > "$d/bin/sudo"; fi
  chmod +x "$d"/bin/*
  # Only the stand-ins and the basic tools (sh, sed...) are on PATH: no real sudo or apt-get.
  mkdir -p "$d/sys"; for t in sh cat echo printf env mkdir; do p="$(command -v $t)"; [ -n "$p" ] && ln -sf "$p" "$d/sys/$t"; done
}
run_deps() { PATH="$1/bin:$1/sys" sh "$here/scripts/deps.sh" libfoo-dev libbar-dev > "$1/out" 2>&1; echo $?; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

# 1. root, no sudo
stand_ins "$tmp/root" 0 no ""
rc=$(run_deps "$tmp/root")
check "root without sudo exits 0" $([ "$rc" -eq 0 ]; echo $?) "exit $rc: $(cat "$tmp/root/out")"
grep -q "^apt-get install -y -qq libfoo-dev libbar-dev DEBIAN_FRONTEND=noninteractive$" "$tmp/root/log"
check "root runs apt-get install directly, noninteractive" $? "$(cat "$tmp/root/log")"
grep -q "^apt-get update" "$tmp/root/log"; check "root runs apt-get update first" $? "$(cat "$tmp/root/log")"
! grep -q "^sudo" "$tmp/root/log"; check "root does not call sudo" $? "$(cat "$tmp/root/log")"

# 2. user with sudo
stand_ins "$tmp/sudo" 1000 yes ""
rc=$(run_deps "$tmp/sudo")
check "user with sudo exits 0" $([ "$rc" -eq 0 ]; echo $?) "exit $rc: $(cat "$tmp/sudo/out")"
grep -q "^sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfoo-dev libbar-dev" "$tmp/sudo/log"
check "user with sudo installs through sudo" $? "$(cat "$tmp/sudo/log")"
grep -q "^apt-get install .*DEBIAN_FRONTEND=noninteractive$" "$tmp/sudo/log"
check "sudo passes DEBIAN_FRONTEND to apt-get" $? "$(cat "$tmp/sudo/log")"

# 3. user without sudo
stand_ins "$tmp/user" 1000 no ""
rc=$(run_deps "$tmp/user")
check "user without sudo exits 1" $([ "$rc" -eq 1 ]; echo $?) "exit $rc"
! grep -q "^apt-get" "$tmp/user/log"; check "user without sudo runs no apt-get" $? "$(cat "$tmp/user/log")"
grep -q "apt-get update && apt-get install -y libfoo-dev libbar-dev" "$tmp/user/out"
check "user without sudo is told what to run as root" $? "$(cat "$tmp/user/out")"

# 4. nothing missing
stand_ins "$tmp/none" 1000 no "libfoo-dev libbar-dev"
rc=$(run_deps "$tmp/none")
check "nothing missing: exit 0" $([ "$rc" -eq 0 ]; echo $?) "exit $rc: $(cat "$tmp/none/out")"
! grep -q "^apt-get" "$tmp/none/log"; check "nothing missing: no apt-get" $? "$(cat "$tmp/none/log")"

# 5. only the missing ones are installed
stand_ins "$tmp/some" 0 no "libfoo-dev"
run_deps "$tmp/some" >/dev/null
grep -q "^apt-get install -y -qq libbar-dev DEBIAN" "$tmp/some/log"; check "only missing packages are installed" $? "$(cat "$tmp/some/log")"

echo "deps_test: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
