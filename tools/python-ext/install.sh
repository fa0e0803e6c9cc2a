#!/usr/bin/env bash
# Installs the pinned componentize-py that builds the Python extensions into a venv.
#
# Usage: tools/python-ext/install.sh   (from anywhere; idempotent)
#
# The venv is target/python-ext-venv; it is (re)made when requirements.txt changed since
# the last install. Prints the path of the venv's componentize-py on stdout.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tools/python-ext"
venv="$root/target/python-ext-venv"
stamp="$venv/requirements.txt"

if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  echo "python-ext: installing $(grep -c '==' "$here/requirements.txt") pinned packages into $venv" >&2
  command -v python3 >/dev/null || { echo "python-ext: python3 is missing" >&2; exit 1; }
  python3 -c 'import venv, ensurepip' 2>/dev/null || {
    apt-get update >&2 && apt-get install -y python3-venv >&2
  }
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$stamp"
fi
echo "$venv/bin/componentize-py"
