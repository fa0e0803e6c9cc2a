set -eu
set -o
set +eu -o pipefail
set -o
set -q
