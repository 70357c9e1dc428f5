#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what it needs,
# builds with warnings as errors, runs every test (unit, integration, end to end).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
bash scripts/build.sh build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDESKPULSE_WERROR=ON

# Fuzz the network and disk decoders (libFuzzer + ASan/UBSan, clang) for a bounded time.
fuzz_seconds="${DESKPULSE_FUZZ_SECONDS:-30}"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDESKPULSE_FUZZ=ON -DDESKPULSE_BUILD_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" >&2
cmake --build build-fuzz --target ingest_fuzz -j "$(nproc)" >&2
corpus="$(mktemp -d)"
if ! (cd "$corpus" && "$root/build-fuzz/ingest_fuzz" -max_total_time="$fuzz_seconds" \
        -rss_limit_mb=2048 -print_final_stats=1 . > fuzz.log 2>&1); then
  tail -40 "$corpus/fuzz.log" >&2
  echo "fuzz: ingest_fuzz found a crash (input saved in $corpus)" >&2
  exit 1
fi
echo "fuzz: ingest_fuzz ran $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$corpus/fuzz.log" | grep -o '[0-9]*$') inputs in ${fuzz_seconds} s without a crash" >&2
rm -rf "$corpus"

cd build-test
ctest --output-on-failure --timeout 900 -j 2 "$@"
