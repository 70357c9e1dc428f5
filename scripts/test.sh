#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what it needs,
# builds with warnings as errors, runs every test (unit, integration, end to end).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDESKPULSE_WERROR=ON
cd build-test
ctest --output-on-failure --timeout 900 -j 2 "$@"
