#!/usr/bin/env bash
# Installs what a DeskPulse command needs, and nothing more: Debian packages
# (apt-get) and the web dashboard's npm packages (collector/web, from its lock
# file). Idempotent: does nothing (not even apt-get update) when all are there.
# Waits, with a bound, for another package manager holding dpkg's lock (a
# fresh cloud machine runs unattended-upgrades at first boot).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash scripts/setup.sh [demo|demo-postgres|test]
       bash scripts/setup.sh --list [demo|demo-postgres|test]
       bash scripts/setup.sh --kernel-table DIR

  demo           what the demo builds and runs with (a Release build, the catalog's
                 public sources, openssl, curl; the dashboard's chart library from the
                 npm registry as package-lock.json pins it, without Node.js)
  demo-postgres  the demo, and a PostgreSQL server for `demo.sh --postgres`
  test           everything the test suite uses (the default): the above, GoogleTest,
                 clang and its sanitizers, clang-tidy, the fakes for what this machine
                 lacks (dbusmock, umockdev, cupsd, pcscd), promtool, Chromium
  --list         print the Debian packages of that set, one per line
  --kernel-table print a directory holding a kernel's modules.alias (the catalog's
                 driver table): the installed kernel's, else one unpacked from Debian's
                 kernel package into DIR, without installing it (no initramfs)

Environment: DESKPULSE_SETUP_LOCK_WAIT (seconds to wait for another package
manager's lock, default 600).
EOF
}

# What the Release build compiles and links against.
BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config git python3
  libasio-dev libprotobuf-dev protobuf-compiler libsqlite3-dev
  libspdlog-dev libfmt-dev libmbedtls-dev
  nlohmann-json3-dev libcli11-dev libtomlplusplus-dev libssl-dev
  # business-signal imports: CSV (RFC 4180)
  libcsv-dev
  # the HTTP server's request parser (Boost.Beast, header-only)
  libboost-dev
  # the shared store's client library
  libpq-dev
  # agent: sd-bus/sd-journal, PC/SC and libvirt headers (the libraries are
  # loaded at run time when present)
  libsystemd-dev libpcsclite-dev libvirt-dev
  # the catalog's XML parser; /metrics' data model; webhooks' HTTP client
  libpugixml-dev prometheus-cpp-dev libcurl4-openssl-dev
)
# What the demo runs with besides: a certificate, curl for the API, and the
# public catalogs the peripheral catalog is built from (the kernel's driver
# table comes from --kernel-table).
DEMO_PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  openssl curl procps ca-certificates
  hwdata libsane1 foomatic-db libccid
)
# `demo.sh --postgres`: a server for its throwaway cluster.
DEMO_POSTGRES_PACKAGES=("${DEMO_PACKAGES[@]}" postgresql postgresql-client)
TEST_PACKAGES=(
  "${DEMO_POSTGRES_PACKAGES[@]}"
  sqlite3 libgtest-dev libgmock-dev
  clang libclang-rt-14-dev clang-format-14 clang-tidy-14
  # agent tests and benchmarks: fakes for what the machine lacks, and the peer
  dbus-daemon python3-dbusmock python3-protobuf systemd-journal-remote
  cups-daemon cups-client libcups2-dev pcscd vsmartcard-vpcd
  libudev-dev umockdev collectd-core iproute2
  # the catalog tests read the installed kernel's modules.alias
  linux-image-amd64
  # promtool (from prometheus) checks /metrics and the alert rules; the tests' parsers
  prometheus python3-prometheus-client python3-yaml
  # the dashboard's browser tests and benchmark: headless Chromium and a font
  chromium fonts-dejavu-core
)

packages_of() {
  case "$1" in
    demo) printf '%s\n' "${DEMO_PACKAGES[@]}" ;;
    demo-postgres) printf '%s\n' "${DEMO_POSTGRES_PACKAGES[@]}" ;;
    test)
      printf '%s\n' "${TEST_PACKAGES[@]}"
      # Node.js and npm drive Chromium in the browser tests (playwright-core);
      # Debian's where the machine has none. The demo needs neither.
      command -v npm >/dev/null || printf '%s\n' nodejs npm ;;
    *) echo "setup: unknown set '$1' (demo, demo-postgres or test)" >&2; usage >&2; exit 2 ;;
  esac
}

SUDO=""
need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: $*" >&2; exit 1; }
    SUDO="sudo"
  fi
}

# ---- waiting for another package manager
read -r -a LOCKS <<< "${DESKPULSE_SETUP_LOCKS:-/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock}"
LOCK_WAIT="${DESKPULSE_SETUP_LOCK_WAIT:-600}"
lock_started=""

# "PID NAME FILE" of a process holding one of dpkg's and apt's locks, or
# nothing. They are fcntl locks, listed in /proc/locks by inode.
lock_holder() {
  local f ino pid
  for f in "${LOCKS[@]}"; do
    [ -e "$f" ] || continue
    ino="$(stat -L -c %i "$f" 2>/dev/null)" || continue
    pid="$(awk -v ino="$ino" '$2 != "->" { n = split($6, d, ":"); if (d[n] == ino) { print $5; exit } }' /proc/locks)"
    if [ -n "$pid" ]; then
      echo "$pid $(cat "/proc/$pid/comm" 2>/dev/null || echo '?') $f"
      return
    fi
  done
}

# Waits until no process holds the locks, saying so, for at most LOCK_WAIT
# seconds counted from the first wait of this run.
wait_for_package_manager() {
  local holder pid name file said=0 now
  while holder="$(lock_holder)"; [ -n "$holder" ]; do
    read -r pid name file <<< "$holder"
    now="$(date +%s)"
    [ -n "$lock_started" ] || lock_started="$now"
    if [ $((now - lock_started)) -ge "$LOCK_WAIT" ]; then
      echo "setup: gave up after ${LOCK_WAIT} s: $name (pid $pid) still holds $file." \
        "Let it finish (or stop it), then run this again." >&2
      exit 1
    fi
    if [ $((said % 30)) -eq 0 ]; then
      echo "setup: waiting for another package manager to finish: $name (pid $pid) holds $file" \
        "($((now - lock_started)) s of at most ${LOCK_WAIT} s)" >&2
    fi
    said=$((said + 1))
    sleep 1
  done
}

# apt-get, after waiting for the locks; again if another package manager took
# them between the wait and apt-get's own attempt.
apt_get() {
  local out rc
  out="$(mktemp)"
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    wait_for_package_manager
    rc=0
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=60 "$@" \
      >&2 2>"$out" || rc=$?
    cat "$out" >&2
    if [ "$rc" -ne 100 ] || ! grep -q "Could not get lock\|Unable to acquire the dpkg frontend lock\|Unable to lock" "$out"; then
      rm -f "$out"
      return "$rc"
    fi
    echo "setup: another package manager took the lock first; waiting again" >&2
  done
  rm -f "$out"
  return 100
}

# ---- the kernel's driver table for the catalog
kernel_table() {
  local dir="$1" found release pkg deb
  found="$(ls -d "${DESKPULSE_SETUP_MODULES:-/lib/modules}"/*/modules.alias 2>/dev/null | sort -V | tail -1 || true)"
  if [ -n "$found" ]; then dirname "$found"; return; fi
  mkdir -p "$dir"
  found="$(ls -d "$dir"/lib/modules/*/modules.alias 2>/dev/null | sort -V | tail -1 || true)"
  if [ -n "$found" ]; then dirname "$found"; return; fi
  # No kernel here (a container): unpack Debian's kernel package and let
  # depmod write its modules.alias, then keep only the tables.
  pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')"
  if [ -z "$pkg" ]; then
    need_root apt-get
    apt_get update -q
    pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')"
  fi
  [ -n "$pkg" ] || { echo "setup: no kernel package found for the catalog's driver table" >&2; exit 1; }
  command -v depmod >/dev/null || { need_root kmod; apt_get install -y -q --no-install-recommends kmod; }
  echo "setup: unpacking $pkg for the catalog's driver table (not installed: no initramfs)" >&2
  (cd "$dir" && rm -f ./*.deb && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2)
  deb="$(ls "$dir"/*.deb)"
  dpkg-deb -x "$deb" "$dir"
  release="${pkg#linux-image-}"
  depmod -b "$dir" "$release"
  find "$dir/lib/modules/$release" -name '*.ko*' -delete
  rm -f "$deb"
  echo "$dir/lib/modules/$release"
}

# ---- the dashboard's npm packages, exactly as locked
# The demo needs only what the collector embeds (uPlot): fetched from the npm
# registry as package-lock.json pins it and checked against the lock's
# integrity hash, without Node.js (Debian's npm alone is some 400 packages).
# The tests install everything, development packages too, with npm ci.
web_packages() {
  local set="$1" web lock stamp want
  web="$(cd "$(dirname "$0")/../collector/web" && pwd)"
  lock="$(sha256sum "$web/package-lock.json" | cut -d' ' -f1)"
  stamp="$web/node_modules/.deskpulse-lock-sha256"
  want="$lock all"
  [ "$set" = test ] || want="$lock"
  if [ -f "$stamp" ] && [[ "$(cat "$stamp")" == "$want"* ]]; then
    echo "setup: the dashboard's npm packages are present" >&2
    return
  fi
  if [ "$set" = test ]; then
    echo "setup: npm ci in $web" >&2
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$lock all" > "$stamp"
    return
  fi
  echo "setup: fetching the dashboard's chart library as package-lock.json pins it" >&2
  python3 - "$web" <<'PY'
import base64, hashlib, io, json, os, shutil, sys, tarfile, urllib.request
web = sys.argv[1]
lock = json.load(open(os.path.join(web, "package-lock.json")))
for path, p in lock["packages"].items():
    if not path or p.get("dev"):
        continue
    name = path.split("node_modules/")[-1]
    url = p.get("resolved") or "https://registry.npmjs.org/{}/-/{}-{}.tgz".format(
        name, name.split("/")[-1], p["version"])
    algo, want = p["integrity"].split("-", 1)
    data = urllib.request.urlopen(url, timeout=60).read()
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != want:
        sys.exit(f"setup: {url}: {algo} {got} is not the {want} package-lock.json pins")
    dest = os.path.join(web, path)
    shutil.rmtree(dest, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if not m.name.startswith("package/") or ".." in m.name.split("/"):
                continue
            m.name = m.name[len("package/"):]
            if m.isfile() or m.isdir():
                tar.extract(m, dest)
    print(f"setup: {name} {p['version']} ({algo} checked)", file=sys.stderr)
PY
  echo "$lock" > "$stamp"
}

install_set() {
  local set="$1" p
  local -a wanted missing=()
  mapfile -t wanted < <(packages_of "$set")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#wanted[@]} packages of '$set' present" >&2
  else
    need_root "${missing[@]}"
    echo "setup: installing for '$set': ${missing[*]}" >&2
    apt_get update -q
    apt_get install -y -q --no-install-recommends "${missing[@]}"
  fi
  web_packages "$set"
}

case "${1:-test}" in
  -h|--help) usage ;;
  --version) bash "$(dirname "$0")/version.sh" setup.sh ;;
  --list) packages_of "${2:-test}" ;;
  --kernel-table) kernel_table "${2:?--kernel-table DIR}" ;;
  demo|demo-postgres|test) install_set "${1:-test}" ;;
  *) echo "setup: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac
