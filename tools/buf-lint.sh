#!/usr/bin/env bash
# Lints the gRPC contract in proto/ with the buf version pinned in tools/package.json.
#
# Usage: tools/buf-lint.sh   (from anywhere; needs node and npm, nothing installed globally)
#
# Installs buf into tools/node_modules with `npm ci` on first use, then runs `buf lint` in
# proto/ (configured by proto/buf.yaml). Fails when buf fails or prints anything at all.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/tools"
buf="$tools/node_modules/.bin/buf"

if [ ! -x "$buf" ]; then
  echo "buf-lint: installing buf into tools/node_modules" >&2
  npm ci --prefix "$tools" --no-audit --no-fund >&2
fi

cd "$root/proto"
if ! output="$("$buf" lint 2>&1)"; then
  printf '%s\n' "$output" >&2
  echo "buf-lint: buf lint failed" >&2
  exit 1
fi
if [ -n "$output" ]; then
  printf '%s\n' "$output" >&2
  echo "buf-lint: buf lint printed output; treat it as a failure" >&2
  exit 1
fi
echo "buf-lint: $("$buf" --version) lint clean" >&2
