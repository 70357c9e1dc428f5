#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine: installs what it needs,
# builds with warnings as errors, runs every test (unit, integration, end to
# end), again under AddressSanitizer + UndefinedBehaviorSanitizer, the
# collector's threaded tests under ThreadSanitizer, clang-tidy over the tree,
# and the fuzzers. Any sanitizer report fails the run.
# Extra arguments go to the main ctest run (e.g. -R IngestTest).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
case "${1:-}" in
  -h|--help)
    cat <<'EOF'
usage: bash scripts/test.sh [CTEST_ARGS...]

Installs what the tests need (scripts/setup.sh test), builds build-test/ with
warnings as errors and runs every test, then again under ASan + UBSan
(build-asan/), the threaded tests under TSan (build-tsan/), clang-tidy and the
fuzzers. CTEST_ARGS go to the first ctest run (e.g. -R IngestTest).
Environment: DESKPULSE_FUZZ_SECONDS (30).
EOF
    exit 0 ;;
  --version) bash scripts/version.sh test.sh; exit 0 ;;
esac
bash scripts/setup.sh test
jobs="$(nproc)"
started=$SECONDS
step() { echo "test.sh: $* ($((SECONDS - started)) s)" >&2; }

# 0. The tree's .clang-format holds for every C++ file.
step "format check (clang-format)"
bash scripts/format.sh --check

# 1. The release-like build, warnings as errors, every test.
step "build (RelWithDebInfo, -Werror)"
bash scripts/build.sh build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDESKPULSE_WERROR=ON
step "ctest"
(cd build-test && ctest --output-on-failure --timeout 900 -j "$jobs" "$@")

# 2. Every test again under ASan + UBSan: a report aborts the process, which
# fails its test (and the end-to-end tests through the binaries' exit codes).
# Built with clang (twice as fast as GCC here with sanitizers), at -O1 with line
# tables. UBSan's "function" check is left out: clang 14 cannot emit it for
# coroutines.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
san_flags="-O1 -g1 -fno-omit-frame-pointer -fno-sanitize-recover=all"
san_cmake=(-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Sanitize
  -DDESKPULSE_WERROR=ON)
step "build (ASan + UBSan)"
bash scripts/build.sh build-asan "${san_cmake[@]}" -DDESKPULSE_SANITIZER=address \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize=function $san_flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined"
step "ctest (ASan + UBSan)"
(cd build-asan && ctest --output-on-failure --timeout 1200 -j "$jobs")

# 3. The collector's threaded parts (ingest, writer, store) under TSan.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
step "build (TSan: ingest, writer, store)"
bash scripts/build.sh build-tsan "${san_cmake[@]}" -DDESKPULSE_SANITIZER=thread \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread $san_flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" \
  --target ingest_test store_test deskpulse-catalog
step "ctest (TSan)"
(cd build-tsan && ctest --output-on-failure --timeout 900 -j "$jobs" -R '^(Ingest|Tls|Clients|SmallFrame|Limits|BufferedBytes|Store|Rollup|Backends|SqliteStore|PgStore)')

# 4. clang-tidy's bug-finding checks (.clang-tidy) over every source file.
step "clang-tidy"
bash scripts/tidy.sh build-test

# 5. Fuzz the network and disk decoders (libFuzzer + ASan/UBSan, clang) for a bounded time.
fuzz_seconds="${DESKPULSE_FUZZ_SECONDS:-30}"
step "build (fuzzers)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDESKPULSE_FUZZ=ON -DDESKPULSE_BUILD_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function" >&2
cmake --build build-fuzz --target ingest_fuzz spool_fuzz http_fuzz -j "$jobs" >&2
for target in ingest_fuzz spool_fuzz http_fuzz; do
  corpus="$(mktemp -d)"
  if ! (cd "$corpus" && "$root/build-fuzz/$target" -max_total_time="$fuzz_seconds" \
          -rss_limit_mb=2048 -print_final_stats=1 . > fuzz.log 2>&1); then
    tail -40 "$corpus/fuzz.log" >&2
    echo "fuzz: $target found a crash (input saved in $corpus)" >&2
    exit 1
  fi
  echo "fuzz: $target ran $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$corpus/fuzz.log" | grep -o '[0-9]*$') inputs in ${fuzz_seconds} s without a crash" >&2
  rm -rf "$corpus"
done
step "all passed"
