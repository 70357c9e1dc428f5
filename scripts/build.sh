#!/usr/bin/env bash
# Configure and build. Usage: scripts/build.sh BUILD_DIR [extra cmake args...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:?usage: build.sh BUILD_DIR [cmake args]}"
shift
cmake -S "$root" -B "$dir" -G Ninja "$@" >&2
cmake --build "$dir" -j "$(nproc)" >&2
