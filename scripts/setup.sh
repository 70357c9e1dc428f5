#!/usr/bin/env bash
# Install every Debian package DeskPulse builds, tests and demos with, and the
# web dashboard's npm packages (collector/web, from its lock file). Idempotent:
# does nothing (not even apt-get update) when all are present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libasio-dev libprotobuf-dev protobuf-compiler libsqlite3-dev sqlite3
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libmbedtls-dev
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev libssl-dev
  # business-signal imports: CSV (RFC 4180)
  libcsv-dev
  # the JSON API's HTTP server (header-only, on standalone Asio)
  librestinio-dev
  python3 procps openssl curl
  # the shared store: libpq to build against, and the server the tests and the
  # two-collector demo start their own throwaway clusters of
  libpq-dev postgresql postgresql-client
  clang libclang-rt-14-dev clang-format-14 clang-tidy-14
  # agent: sd-bus/sd-journal headers (libsystemd is loaded at run time)
  libsystemd-dev
  # agent tests and benchmarks: fakes for what the machine lacks, and the peer
  dbus-daemon python3-dbusmock python3-protobuf systemd-journal-remote
  cups-daemon cups-client libcups2-dev pcscd libpcsclite-dev vsmartcard-vpcd
  libvirt-dev libudev-dev umockdev collectd-core iproute2
  # peripheral catalog: the public catalogs it is built from, and its XML parser
  hwdata libsane1 foomatic-db libccid linux-image-amd64 libpugixml-dev
  # /metrics: prometheus-cpp's data model and text format; promtool (from
  # prometheus) to check it and the alert rules; the tests' parsers
  prometheus-cpp-dev prometheus python3-prometheus-client python3-yaml
  # webhooks: the HTTP client
  libcurl4-openssl-dev
  # the dashboard's browser tests and benchmark: headless Chromium and a font
  chromium fonts-dejavu-core
)
# Node.js and npm bundle the dashboard's charts (uPlot) and drive Chromium
# (playwright-core); Debian's are used where the machine has none of its own.
command -v npm >/dev/null || PACKAGES+=(nodejs npm)

# The dashboard's npm packages, exactly as locked, unless already installed
# from this very lock file.
npm_packages() {
  local web lock stamp
  web="$(cd "$(dirname "$0")/../collector/web" && pwd)"
  lock="$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)"
  stamp="$web/node_modules/.deskpulse-lock-sha256"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock" ]; then
    echo "setup: npm packages present" >&2
    return
  fi
  echo "setup: npm ci in $web" >&2
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$lock" > "$stamp"
}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present" >&2
  npm_packages
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >&2
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
npm_packages
