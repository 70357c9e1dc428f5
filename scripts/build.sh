#!/usr/bin/env bash
# Configure and build.
# Usage: scripts/build.sh BUILD_DIR [cmake args...] [--target TARGET...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
case "${1:-}" in
  -h|--help) echo "usage: bash scripts/build.sh BUILD_DIR [cmake args...] [--target TARGET...]"; exit 0 ;;
  --version) bash "$root/scripts/version.sh" build.sh; exit 0 ;;
esac
dir="${1:?usage: build.sh BUILD_DIR [cmake args] [--target TARGET...]}"
shift
configure=()
targets=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--target" ]; then
    shift
    targets=("$@")
    break
  fi
  configure+=("$1")
  shift
done
cmake -S "$root" -B "$dir" -G Ninja "${configure[@]}" >&2
if [ ${#targets[@]} -gt 0 ]; then
  cmake --build "$dir" -j "$(nproc)" --target "${targets[@]}" >&2
else
  cmake --build "$dir" -j "$(nproc)" >&2
fi
