#!/usr/bin/env bash
# The DeskPulse demo: installs what it needs, builds, serves a collector on the
# embedded SQLite store over TLS, simulates ~1,000 endpoints of three customers
# over 30 days through the real protocol, imports sample business signals
# through the JSON API, prints each customer's technical performance, loyalty
# health and churn risk and the typical customer's peripherals, and keeps
# serving the JSON API and the web dashboard until Ctrl-C.
#
# A second run keeps what the first made (the store, the certificate, the
# ports and the tokens) and serves it again; --fresh starts over.
set -Eeuo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

usage() {
  cat <<'EOF'
usage: bash scripts/demo.sh [--postgres] [--fresh]

  --postgres  the same demo on a local PostgreSQL cluster the demo starts, two
              collectors sharing it (DESKPULSE_DEMO_POSTGRES=1 too)
  --fresh     start over: a new store, certificate, ports and tokens

A second run reuses the store, certificate, ports and tokens of the first.
Ctrl-C stops the collectors (within about 15 s) and keeps all of it.

Environment: DESKPULSE_DEMO_DIR (default demo-data/), DESKPULSE_DEMO_ENDPOINTS (1000),
DESKPULSE_DEMO_DAYS (30), DESKPULSE_DEMO_HTTP_PORT (the last run's, else a free
one), DESKPULSE_DEMO_SERVE=0 (print, then stop), DESKPULSE_DEMO_BUILD (an
existing build directory instead of building build-demo/).
EOF
}

postgres="${DESKPULSE_DEMO_POSTGRES:-0}"
fresh=0
for arg in "$@"; do
  case "$arg" in
    --postgres) postgres=1 ;;
    --fresh) fresh=1 ;;
    -h|--help) usage; exit 0 ;;
    --version) bash scripts/version.sh demo.sh; exit 0 ;;
    *) echo "demo: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done
data="${DESKPULSE_DEMO_DIR:-$root/demo-data}"
endpoints="${DESKPULSE_DEMO_ENDPOINTS:-1000}"
days="${DESKPULSE_DEMO_DAYS:-30}"
mkdir -p "$data"
data="$(cd "$data" && pwd)"

# One demo at a time on a data directory.
exec 9>"$data/.demo.lock"
if ! flock -n 9; then
  echo "demo: another demo is running on $data (pid $(cat "$data/.demo.pid" 2>/dev/null ||" \
    "echo '?')): stop it with Ctrl-C where it runs, then run this again" >&2
  exit 1
fi
echo $$ > "$data/.demo.pid"

say() { echo "demo: $*" >&2; }
# A word of a printed command, quoted for a shell only when it needs to be.
q() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}

if [ "$postgres" = 1 ]; then
  bash scripts/setup.sh demo-postgres
else
  bash scripts/setup.sh demo
fi
if [ -n "${DESKPULSE_DEMO_BUILD:-}" ]; then
  bin="$(cd "$DESKPULSE_DEMO_BUILD" && pwd)"
else
  if [ -f build-demo/build.ninja ]; then
    say "building (Release) in build-demo/: only what changed since the last run"
  else
    say "building (Release) in build-demo/: the first build takes about 5 minutes on 2 cores"
  fi
  bash scripts/build.sh build-demo -DCMAKE_BUILD_TYPE=Release -DDESKPULSE_BUILD_TESTS=OFF
  bin="$root/build-demo"
fi
collector="$bin/collector/deskpulse-collector"
fleetsim="$bin/agent/deskpulse-fleetsim"
catalog_tool="$bin/collector/deskpulse-catalog"
log_of_demo="$data/demo.log"  # what the demo's own steps say, when all is well
: > "$log_of_demo"
# Once, from the shell itself (not again from a command substitution).
trap '[ "$BASH_SUBSHELL" -gt 0 ] || say "stopped by a failure at line $LINENO of scripts/demo.sh; see $log_of_demo"' ERR

# ---- the store: kept from the last run unless --fresh
if [ "$postgres" = 1 ]; then
  state="$data/pg"
else
  state="$data"
fi
mkdir -p "$state"
if [ "$fresh" = 1 ]; then
  say "--fresh: starting over in $data"
  [ -f "$data/pg/dir" ] && bash tests/fakes/pg_cluster.sh stop "$data/pg"
  rm -rf "$data/pg" "$data"/deskpulse.db* "$data"/collector*.{crt,key,log} "$data"/*port* \
    "$data/tokens.txt" "$data/api-token" "$data/.done" "$data/samples" "$state/fleetsim-summary.json"
  mkdir -p "$state"
fi
reuse=0
if [ -f "$state/.done" ]; then
  reuse=1
elif [ -e "$data/deskpulse.db" ] && [ "$postgres" = 0 ] || [ -f "$state/dir" ]; then
  say "the last run stopped before its simulation finished: starting that store over"
  [ -f "$state/dir" ] && bash tests/fakes/pg_cluster.sh stop "$state"
  rm -f "$data"/deskpulse.db* "$state/tokens.txt" "$state/api-token"
fi

if [ "$postgres" = 1 ]; then
  # A cluster of the demo's own, outside the home directory (the server runs as
  # an unprivileged user), kept across runs.
  bash tests/fakes/pg_cluster.sh ensure "$state" /var/tmp
  port="$(sed -E 's#.*@127\.0\.0\.1:([0-9]+)/.*#\1#' "$state/uri")"
  # The password in a passfile the URI names: every printed command runs as it stands.
  printf '127.0.0.1:*:*:deskpulse:%s\n' "$(cat "$state/password")" > "$state/pgpass"
  chmod 600 "$state/pgpass"
  db="postgresql://deskpulse@127.0.0.1:$port/deskpulse?passfile=$state/pgpass"
  admin="postgresql://deskpulse@127.0.0.1:$port/postgres?passfile=$state/pgpass"
  if [ -z "$(psql "$admin" -X -At -c "SELECT 1 FROM pg_database WHERE datname = 'deskpulse'")" ]; then
    psql "$admin" -X -q -c "CREATE DATABASE deskpulse"
  fi
  collectors=2
else
  db="$data/deskpulse.db"
  collectors=1
fi

# ---- the peripheral catalog, from the public catalogs Debian installed
catalog="$data/catalog.sqlite"
kernel="$(bash scripts/setup.sh --kernel-table "$data/kernel")"
"$catalog_tool" build --out "$catalog" --kernel-modules "$kernel" >> "$log_of_demo"

# ---- the certificate agents and browsers see: the demo's own, kept a year
cert="$data/collector.crt"
key="$data/collector.key"
if [ -f "$cert" ] && [ -f "$key" ] && openssl x509 -in "$cert" -noout -checkend 86400 >/dev/null 2>&1; then
  :
else
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
    -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$key" -out "$cert" 2>/dev/null
  chmod 600 "$key"
  say "made a certificate for 127.0.0.1 and localhost: $cert"
fi

# ---- enrollment tokens for the three customers (this makes the store)
tokens="$state/tokens.txt"
if [ "$reuse" = 0 ]; then
  : > "$tokens"
  chmod 600 "$tokens"
  for spec in "Northwind Health|healthy" "Contoso Legal|typical" "Fabrikam Logistics|struggling"; do
    name="${spec%|*}"
    token="$("$collector" token create --db "$db" --customer "$name" 2>> "$log_of_demo")"
    echo "$name $token ${spec#*|}" >> "$tokens"
  done
fi

# ---- the collectors: ingest, the JSON API, the dashboard and /metrics
pids=()
stop_collectors() {
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
on_exit() {
  stop_collectors
  if [ "$postgres" = 1 ]; then bash tests/fakes/pg_cluster.sh halt "$state"; fi
}
on_signal() {
  echo >&2
  say "stopping (the collectors take at most about 15 s) ..."
  on_exit
  say "stopped; the store, certificate, ports and tokens stay in $data for the next run"
  exit 0
}
trap on_exit EXIT
trap on_signal INT TERM

logs=()
start_collector() {  # N: collector N, with its ports kept from the last run
  local n="$1" logf="$state/collector$1.log" http_port listen_port pid
  [ "$collectors" -gt 1 ] || logf="$data/collector.log"
  logs+=("$logf")
  listen_port="$(cat "$state/ingest-port$n" 2>/dev/null || echo 0)"
  http_port="$(cat "$state/http-port$n" 2>/dev/null || echo 0)"
  if [ "$n" = 1 ] && [ -n "${DESKPULSE_DEMO_HTTP_PORT:-}" ]; then http_port="$DESKPULSE_DEMO_HTTP_PORT"; fi
  for attempt in 1 2; do
    rm -f "$state/ingest-port$n.new" "$state/http-port$n.new"
    "$collector" serve --db "$db" --listen "127.0.0.1:$listen_port" --http "127.0.0.1:$http_port" \
      --port-file "$state/ingest-port$n.new" --http-port-file "$state/http-port$n.new" \
      --catalog "$catalog" --tls-cert "$cert" --tls-key "$key" --log-file "$logf" 2>/dev/null &
    pid=$!
    for _ in $(seq 300); do
      [ -s "$state/http-port$n.new" ] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if [ -s "$state/http-port$n.new" ]; then
      pids+=("$pid")
      break
    fi
    wait "$pid" 2>/dev/null || true
    if [ "$attempt" = 2 ] || { [ "$listen_port" = 0 ] && [ "$http_port" = 0 ]; }; then
      say "collector $n did not start: $(tail -1 "$logf")"
      exit 1
    fi
    say "port $listen_port or $http_port is taken now: collector $n serves on new ones"
    listen_port=0
    http_port=0
  done
  mv "$state/ingest-port$n.new" "$state/ingest-port$n"
  mv "$state/http-port$n.new" "$state/http-port$n"
}
for n in $(seq "$collectors"); do start_collector "$n"; done
ingest="$(for n in $(seq "$collectors"); do printf '127.0.0.1:%s,' "$(cat "$state/ingest-port$n")"; done)"
ingest="${ingest%,}"
base="https://127.0.0.1:$(cat "$state/http-port1")"
api="$base/api/v1"

# ---- the vendor's API token: the last run's while it still works
api_token_file="$state/api-token"
works() { curl -sf -o /dev/null --cacert "$cert" -H "Authorization: Bearer $(cat "$api_token_file")" "$api"; }
if [ -s "$api_token_file" ] && works; then
  :
else
  [ -s "$api_token_file" ] && say "the API token in $api_token_file no longer works (revoked?): made a new one"
  "$collector" api-token create --db "$db" --role vendor 2>> "$log_of_demo" > "$api_token_file"
  chmod 600 "$api_token_file"
fi
vendor_token="$(cat "$api_token_file")"
auth=(-H "Authorization: Bearer $vendor_token")

# Reports the collectors committed whose rollups are not written yet.
backlog() {
  local n total=0 v
  for n in $(seq "$collectors"); do
    v="$(curl -sf --cacert "$cert" "https://127.0.0.1:$(cat "$state/http-port$n")/metrics" |
         awk '$1 == "deskpulse_store_rollup_backlog_reports" { print int($2) }')"
    total=$((total + ${v:-1}))
  done
  echo "$total"
}

if [ "$reuse" = 1 ]; then
  say "reusing the demo made $(cat "$state/.done"): its store, certificate, ports and tokens" \
    "(bash scripts/demo.sh --fresh starts over)"
else
  say "simulating $endpoints endpoints of 3 customers over $days days ..."
  # From 16 loopback addresses over 2 s, as a fleet arrives: the collector's
  # per-address and not-yet-welcomed caps see what they would in the field.
  "$fleetsim" --collector "$ingest" --ca "$cert" --tokens "$tokens" --catalog "$catalog" \
    --endpoints "$endpoints" --days "$days" --seed 42 --from 127.0.1.1-127.0.1.16 --ramp 2 \
    > "$state/fleetsim-summary.json" 2>> "$log_of_demo"
  [ "$(backlog)" = 0 ] || say "writing the rollups of what was simulated ..."
  for _ in $(seq 600); do [ "$(backlog)" = 0 ] && break; sleep 0.2; done
  [ "$(backlog)" = 0 ] || say "the rollups are still being written: the first scores may lack a few reports"
  # Business signals for the three customers (collector/samples/), their
  # dates moved by the days since the samples were written so that they stay
  # current, through the JSON API.
  mkdir -p "$data/samples"
  for kind in surveys tickets contracts reviews; do
    python3 - "$root/collector/samples/$kind.csv" "$data/samples/$kind.csv" <<'PY'
import datetime, re, sys
shift = datetime.date.today() - datetime.date(2026, 12, 1)
def moved(m):
    return (datetime.date.fromisoformat(m.group(0)) + shift).isoformat()
text = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(re.sub(r"\d{4}-\d{2}-\d{2}", moved, text))
PY
    curl -sf --cacert "$cert" "${auth[@]}" -H "Content-Type: text/csv" \
      --data-binary "@$data/samples/$kind.csv" "$api/imports/$kind" >> "$log_of_demo"
  done
  date '+%Y-%m-%d %H:%M' > "$state/.done"
fi

echo
echo "Technical performance over the last $days days (docs/scoring.md):"
"$collector" scores --db "$db"
echo
echo "Loyalty health and churn risk, at-risk first (docs/scoring.md):"
"$collector" health --db "$db"
echo
echo "Peripheral compatibility of the typical customer (docs/catalog.md):"
"$collector" peripherals --db "$db" --customer "Contoso Legal" --catalog "$catalog"

# The API's book reassesses after each import: wait for the round that saw them.
echo
echo "The JSON API, at-risk customers first (docs/api.md):"
for _ in $(seq 100); do
  out="$(curl -sf --cacert "$cert" "${auth[@]}" "$api/customers?limit=3" || true)"
  python3 -c 'import json,sys; c=json.loads(sys.argv[1])["customers"]; sys.exit(0 if c and all(x["lhi"] is not None for x in c) else 1)' "$out" 2>/dev/null && break
  sleep 0.2
done
python3 - "$out" <<'PY'
import json, sys
for c in json.loads(sys.argv[1])["customers"]:
    lhi = "n/a" if c["lhi"] is None else c["lhi"]
    print("  {:<20} risk {:<7} LHI {:<5} top driver: {}".format(c["customer"], c["risk"], lhi,
                                                              c["top_driver"]))
PY

c="$(q "$collector")"
d="$(q "$db")"
echo
echo "Where everything is (kept for the next run; bash scripts/demo.sh --fresh starts over):"
if [ "$postgres" = 1 ]; then
  echo "  store    $db"
  echo "           (PostgreSQL in $(cat "$state/dir"), its password in $state/pgpass)"
else
  echo "  store    $db (SQLite)"
fi
echo "  logs     ${logs[*]}; the demo's own steps in $log_of_demo"
echo "  tokens   enrollment tokens in $tokens, the vendor's API token in $api_token_file"
echo "  catalog  $catalog; certificate $cert (the demo's own)"
[ -f "$state/fleetsim-summary.json" ] && echo "  load     $state/fleetsim-summary.json"
echo
echo "Try (each line runs as it stands, while the demo serves):"
echo "    $c scores --db $d --json"
echo "    $c health --db $d --json"
echo "    $(q "$catalog_tool") lookup --catalog $(q "$catalog") 03f0:2b17 --interface-classes 07"
echo "    curl --cacert $(q "$cert") -H \"Authorization: Bearer \$(cat $(q "$api_token_file"))\" $api/customers"
echo "    curl --cacert $(q "$cert") $base/metrics"
echo "    $c api-token create --db $d --role customer-admin --customer 'Contoso Legal'"
if [ "$postgres" = 1 ]; then
  echo "    psql $(q "$db") -c 'SELECT count(*) FROM reports'"
fi
echo
echo "The web dashboard (fleet, customer and endpoint views; docs/dashboard.md):"
echo "  Open:  $base/  (accept the demo's own certificate)"
echo "  Token: $vendor_token"
echo "         (a vendor's: every customer; a customer-admin's, made as above, sees its own only)"
if [ "${DESKPULSE_DEMO_SERVE:-1}" = 1 ]; then
  echo "Serving agents, the API and the dashboard until Ctrl-C."
  wait "${pids[0]}" || true
fi
