#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and the demo, from Debian's
# postgresql package: initdb in a temporary directory, on a free loopback
# port, password (SCRAM) authentication over TCP, run as an unprivileged user
# when called as root (initdb refuses root). Never touches a system cluster.
#
#   pg_cluster.sh start STATE_DIR         # a new cluster; writes STATE_DIR/uri (superuser
#                                         # URI), STATE_DIR/dir and STATE_DIR/password
#   pg_cluster.sh ensure STATE_DIR [BASE] # the cluster STATE_DIR names, started if it is not
#                                         # running (on a new port if its own is taken); a
#                                         # new one in a directory under BASE if there is none
#   pg_cluster.sh halt STATE_DIR          # stop the server, keep its data (ensure starts it)
#   pg_cluster.sh stop STATE_DIR          # stop the server and delete the cluster
set -euo pipefail
cmd="${1:?start|ensure|halt|stop}"
state="$(realpath -m "${2:?state directory}")"
base="$(realpath -m "${3:-/tmp}")"
# The server's user may not enter the caller's directory (root's home):
# its tools would say so on every call.
cd /

bindir="$(pg_config --bindir 2>/dev/null || true)"
if [ ! -x "$bindir/initdb" ]; then
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
fi
[ -x "$bindir/initdb" ] || { echo "pg_cluster: no initdb (install postgresql: scripts/setup.sh)" >&2; exit 1; }

as_owner=()
if [ "$(id -u)" -eq 0 ]; then as_owner=(runuser -u nobody --); fi

running() {
  [ -f "$state/dir" ] && "${as_owner[@]}" "$bindir/pg_ctl" -D "$(cat "$state/dir")/data" status \
    >/dev/null 2>&1
}

halt() {
  [ -f "$state/dir" ] || return 0
  local dir
  dir="$(cat "$state/dir")"
  if [ -f "$dir/data/postmaster.pid" ]; then
    "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m "${1:-fast}" -w stop >/dev/null 2>&1 || true
  fi
}

stop() {
  [ -f "$state/dir" ] || return 0
  halt immediate
  rm -rf "$(cat "$state/dir")" "$state/dir" "$state/uri" "$state/password"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts the cluster in $state/dir on `port` (or free ones), writing the URI.
serve() {
  local dir port="${1:-}" password
  dir="$(cat "$state/dir")"
  password="$(cat "$state/password")"
  for attempt in 1 2 3 4 5; do
    [ -n "$port" ] || port="$(free_port)"
    if "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
         -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB -c max_wal_size=2GB" \
         start > /dev/null; then
      echo "postgresql://deskpulse:$password@127.0.0.1:$port/postgres" > "$state/uri"
      chmod 600 "$state/uri"
      echo "pg_cluster: PostgreSQL $("$bindir/postgres" -V | awk '{print $3}') on 127.0.0.1:$port ($dir)" >&2
      return 0
    fi
    echo "pg_cluster: start on port $port failed (attempt $attempt)" >&2
    tail -5 "$dir/server.log" >&2 || true
    port=""
  done
  return 1
}

create() {
  local dir password
  mkdir -p "$state"
  dir="$(mktemp -d "$base/deskpulse-pg.XXXXXX")"
  echo "$dir" > "$state/dir"
  password="$(openssl rand -hex 16)"
  printf '%s\n' "$password" > "$state/password"
  chmod 600 "$state/password"
  printf '%s\n' "$password" > "$dir/pwfile"
  chmod 755 "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown nobody "$dir" "$dir/pwfile"; fi
  chmod 600 "$dir/pwfile"
  "${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U deskpulse --pwfile="$dir/pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 --no-sync \
    > "$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"
  serve
}

case "$cmd" in
  stop) stop ;;
  halt) halt ;;
  start)
    stop
    create ;;
  ensure)
    if [ -f "$state/dir" ] && [ -f "$state/password" ] && [ -f "$(cat "$state/dir")/data/PG_VERSION" ]; then
      if running; then
        exit 0
      fi
      # Its own port again when free, so the printed URIs keep working.
      old="$(sed -nE 's#.*@127\.0\.0\.1:([0-9]+)/.*#\1#p' "$state/uri" 2>/dev/null || true)"
      # (As the server binds: with SO_REUSEADDR, past its own connections in TIME_WAIT.)
      if [ -n "$old" ] && python3 -c "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $old)); s.listen()" 2>/dev/null; then
        serve "$old"
      else
        serve
      fi
    else
      stop
      create
    fi ;;
  *) echo "pg_cluster: start|ensure|halt|stop" >&2; exit 2 ;;
esac
