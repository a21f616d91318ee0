#!/bin/bash
# The README demo: build the guest once, then run the demo tests against the virtual board
# inside `jmp shell` (the same tests run unchanged against a board in direct or distributed mode).
set -euo pipefail
cd "$(dirname "$0")/../.."
GUEST=/var/tmp/jumpstarter-dut
if [ ! -f "$GUEST/kernel" ]; then
    echo "building the demo guest into $GUEST (first run only; needs apt and root)" >&2
    if [ "$(id -u)" = 0 ]; then examples/qemu/build-guest.sh "$GUEST"; else sudo examples/qemu/build-guest.sh "$GUEST"; fi
fi
command -v mke2fs >/dev/null || { echo "mke2fs missing: apt-get install e2fsprogs" >&2; exit 1; }
exec .venv/bin/jmp shell --exporter-config examples/qemu/exporter.yaml -- \
    .venv/bin/pytest -p no:cacheprovider -o addopts="" -v examples/qemu "$@"
