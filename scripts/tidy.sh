#!/usr/bin/env bash
# clang-tidy's bug-finding checks (.clang-tidy) over every C++ source file of
# the tree, with the compile commands of a configured build directory.
# Usage: scripts/tidy.sh BUILD_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
case "${1:-}" in
  -h|--help) echo "usage: bash scripts/tidy.sh BUILD_DIR (a configured build with compile commands)"; exit 0 ;;
  --version) bash "$root/scripts/version.sh" tidy.sh; exit 0 ;;
esac
build="${1:?usage: tidy.sh BUILD_DIR}"
cd "$root"
mapfile -t files < <(git ls-files '*.cc')
# GCC's options that clang does not know are not findings.
run-clang-tidy-14 -quiet -p "$build" -j "$(nproc)" \
  -extra-arg=-Wno-unknown-warning-option -extra-arg=-Wno-unused-command-line-argument \
  "${files[@]/#/$root/}" > "$build/clang-tidy.log" 2>&1 || {
  grep -E "(warning|error):" "$build/clang-tidy.log" | sort -u | head -100 >&2
  echo "clang-tidy: findings above (full log: $build/clang-tidy.log)" >&2
  exit 1
}
echo "clang-tidy: ${#files[@]} files, no findings" >&2
