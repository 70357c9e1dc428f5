#!/usr/bin/env bash
# Prints "NAME VERSION" with the project's version (CMakeLists.txt's), for the
# scripts' --version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
echo "${1:-deskpulse} $(sed -nE 's/^project\(deskpulse VERSION ([0-9.]+).*/\1/p' "$root/CMakeLists.txt")"
