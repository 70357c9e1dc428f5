#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, from Debian's postgresql
# package: initdb in a fresh temporary directory, on a free loopback port,
# password (SCRAM) authentication over TCP, run as an unprivileged user when
# called as root (initdb refuses root). Never touches a system cluster.
#
#   pg_cluster.sh start STATE_DIR   # writes STATE_DIR/uri (superuser URI) and STATE_DIR/dir
#   pg_cluster.sh stop STATE_DIR
set -euo pipefail
cmd="${1:?start|stop}"
state="${2:?state directory}"

bindir="$(pg_config --bindir 2>/dev/null || true)"
if [ ! -x "$bindir/initdb" ]; then
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
fi
[ -x "$bindir/initdb" ] || { echo "pg_cluster: no initdb (install postgresql: scripts/setup.sh)" >&2; exit 1; }

as_owner=()
if [ "$(id -u)" -eq 0 ]; then as_owner=(runuser -u nobody --); fi

stop() {
  [ -f "$state/dir" ] || return 0
  local dir
  dir="$(cat "$state/dir")"
  if [ -f "$dir/data/postmaster.pid" ]; then
    "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir" "$state/dir" "$state/uri"
}

case "$cmd" in
  stop) stop ;;
  start)
    stop
    mkdir -p "$state"
    dir="$(mktemp -d /tmp/deskpulse-pg.XXXXXX)"
    echo "$dir" > "$state/dir"
    password="$(openssl rand -hex 16)"
    printf '%s\n' "$password" > "$dir/pwfile"
    chmod 755 "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown nobody "$dir" "$dir/pwfile"; fi
    chmod 600 "$dir/pwfile"
    "${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U deskpulse --pwfile="$dir/pwfile" \
      --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 --no-sync \
      > "$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    for attempt in 1 2 3 4 5; do
      port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
      if "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
           -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB -c max_wal_size=2GB" \
           start > /dev/null; then
        echo "postgresql://deskpulse:$password@127.0.0.1:$port/postgres" > "$state/uri"
        chmod 600 "$state/uri"
        echo "pg_cluster: PostgreSQL $("$bindir/postgres" -V | awk '{print $3}') on 127.0.0.1:$port ($dir)" >&2
        exit 0
      fi
      echo "pg_cluster: start on port $port failed (attempt $attempt)" >&2
      tail -5 "$dir/server.log" >&2 || true
    done
    exit 1 ;;
  *) echo "pg_cluster: start|stop" >&2; exit 2 ;;
esac
