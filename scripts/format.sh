#!/usr/bin/env bash
# Applies the tree's .clang-format to every C++ file in the repository, or with
# --check fails (naming the files) if any is not formatted.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) echo "usage: bash scripts/format.sh [--check]"; exit 0 ;;
  --version) bash scripts/version.sh format.sh; exit 0 ;;
esac
mapfile -t files < <(git ls-files '*.cc' '*.h')
if [ "${1:-}" = "--check" ]; then
  if ! clang-format-14 --dry-run --Werror "${files[@]}" 2> /tmp/deskpulse-format.$$; then
    grep -o '^[^:]*' /tmp/deskpulse-format.$$ | sort -u | sed 's/^/format: not formatted: /' >&2
    rm -f /tmp/deskpulse-format.$$
    echo "format: run bash scripts/format.sh" >&2
    exit 1
  fi
  rm -f /tmp/deskpulse-format.$$
  echo "format: ${#files[@]} files formatted" >&2
else
  clang-format-14 -i "${files[@]}"
fi
