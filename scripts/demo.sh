#!/usr/bin/env bash
# The DeskPulse demo: installs, builds, starts a collector on the embedded SQLite
# store, simulates ~1,000 endpoints of three customers over 30 days, prints
# each customer's technical performance score, imports sample business signals,
# prints the customers' loyalty health and churn risk, and serves the JSON API
# (printing a curl line that works) and the web dashboard (printing its URL and
# a token to log in with) until Ctrl-C.
#
# With --postgres (or DESKPULSE_DEMO_POSTGRES=1) the same demo runs on a local
# PostgreSQL cluster it starts, with two collectors sharing it and the
# simulated endpoints spread over both.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
postgres="${DESKPULSE_DEMO_POSTGRES:-0}"
for arg in "$@"; do
  case "$arg" in
    --postgres) postgres=1 ;;
    *) echo "usage: demo.sh [--postgres]" >&2; exit 2 ;;
  esac
done
data="${DESKPULSE_DEMO_DIR:-$root/demo-data}"
endpoints="${DESKPULSE_DEMO_ENDPOINTS:-1000}"
days="${DESKPULSE_DEMO_DAYS:-30}"

bash scripts/setup.sh
echo "demo: building (Release) ..." >&2
bash scripts/build.sh build-demo -DCMAKE_BUILD_TYPE=Release -DDESKPULSE_BUILD_TESTS=OFF
bin="$root/build-demo"
collector="$bin/collector/deskpulse-collector"
fleetsim="$bin/agent/deskpulse-fleetsim"
catalog_tool="$bin/collector/deskpulse-catalog"

# A fresh store each run, so the demo shows exactly what this run simulated.
mkdir -p "$data"
rm -f "$data/deskpulse.db" "$data/deskpulse.db-wal" "$data/deskpulse.db-shm" "$data"/port*
db="$data/deskpulse.db"
log="$data/collector.log"
collectors=1
if [ "$postgres" = 1 ]; then
  # A throwaway cluster (initdb as an unprivileged user, a free loopback port).
  bash tests/fakes/pg_cluster.sh start "$data/pg"
  admin="$(cat "$data/pg/uri")"
  psql "$admin" -X -q -c "DROP DATABASE IF EXISTS deskpulse" -c "CREATE DATABASE deskpulse"
  # The password goes to libpq by PGPASSWORD, not on command lines.
  export PGPASSWORD="$(sed -E 's#^[^:]+://[^:]+:([^@]+)@.*#\1#' "$data/pg/uri")"
  db="$(sed -E 's#^([^:]+://[^:]+):[^@]+@#\1@#; s#/postgres$#/deskpulse#' "$data/pg/uri")"
  collectors=2
fi

# The peripheral compatibility catalog, from the public catalogs Debian installed.
catalog="$data/catalog.sqlite"
echo "demo: building the peripheral catalog ..." >&2
"$catalog_tool" build --out "$catalog" >&2

tokens="$data/tokens.txt"
: > "$tokens"
for spec in "Northwind Health|healthy" "Contoso Legal|typical" "Fabrikam Logistics|struggling"; do
  name="${spec%|*}"
  profile="${spec#*|}"
  token="$("$collector" token create --db "$db" --customer "$name")"
  echo "$name $token $profile" >> "$tokens"
done
chmod 600 "$tokens"

# Agents talk TLS to the collector, as they would across a network: a
# throwaway certificate for this machine, which the simulated agents trust.
cert="$data/collector.crt"
key="$data/collector.key"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$key" -out "$cert" 2>/dev/null
chmod 600 "$key"

pids=()
addresses=""
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' EXIT
for i in $(seq "$collectors"); do
  logi="$log"
  [ "$collectors" -gt 1 ] && logi="$data/collector$i.log"
  "$collector" serve --db "$db" --listen 127.0.0.1:0 --port-file "$data/port$i" \
    --log-file "$logi" --tls-cert "$cert" --tls-key "$key" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$data/port$i" ] && break; sleep 0.1; done
  [ -s "$data/port$i" ] || { echo "demo: collector did not start; see $logi" >&2; exit 1; }
  port="$(cat "$data/port$i")"
  addresses="${addresses:+$addresses,}127.0.0.1:$port"
  echo "demo: collector $i listening on 127.0.0.1:$port (TLS), store $db" >&2
done
echo "demo: simulating $endpoints endpoints of 3 customers over $days days ..." >&2
"$fleetsim" --collector "$addresses" --ca "$cert" --tokens "$tokens" --catalog "$catalog" \
  --endpoints "$endpoints" --days "$days" --seed 42 > "$data/fleetsim-summary.json"
kill -TERM "${pids[@]}"
for pid in "${pids[@]}"; do wait "$pid" || true; done
trap - EXIT

echo
echo "Technical performance over the last $days days (docs/scoring.md):"
"$collector" scores --db "$db"

# Business signals for the three customers (collector/samples/), their dates
# moved by the days since the samples were written so that they stay current.
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
  "$collector" import --db "$db" --kind "$kind" "$data/samples/$kind.csv" >&2
done
echo
echo "Loyalty health and churn risk, at-risk first (docs/scoring.md):"
"$collector" health --db "$db"
echo
echo "Peripheral compatibility of the typical customer (docs/catalog.md):"
"$collector" peripherals --db "$db" --customer "Contoso Legal" --catalog "$catalog"

# The JSON API (docs/api.md) over HTTPS with the agents' certificate, with a
# vendor token made for this run; the collector keeps serving until Ctrl-C.
vendor_token="$("$collector" api-token create --db "$db" --role vendor)"
echo "$vendor_token" > "$data/api-token"
chmod 600 "$data/api-token"
rm -f "$data/http-port"
"$collector" serve --db "$db" --listen 127.0.0.1:0 --port-file "$data/port1" \
  --http "127.0.0.1:${DESKPULSE_DEMO_HTTP_PORT:-0}" --http-port-file "$data/http-port" \
  --catalog "$catalog" --log-file "$log" --tls-cert "$cert" --tls-key "$key" 2>/dev/null &
serving=$!
trap 'kill -TERM "$serving" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$data/http-port" ] && break; sleep 0.1; done
[ -s "$data/http-port" ] || { echo "demo: the API did not start; see $log" >&2; exit 1; }
api="https://127.0.0.1:$(cat "$data/http-port")/api/v1"
curl_line="curl --cacert $cert -H \"Authorization: Bearer \$(cat $data/api-token)\" $api/customers"
echo
echo "The JSON API, at-risk customers first (docs/api.md):"
echo "  $curl_line"
for _ in $(seq 50); do
  if out="$(curl -sf --cacert "$cert" -H "Authorization: Bearer $vendor_token" "$api/customers?limit=3")"; then
    break
  fi
  sleep 0.2  # the first assessment of the book is still running
done
python3 - "$out" <<'PY'
import json, sys
for c in json.loads(sys.argv[1])["customers"]:
    lhi = "n/a" if c["lhi"] is None else c["lhi"]
    print("  {:<20} risk {:<7} LHI {:<5} top driver: {}".format(c["customer"], c["risk"], lhi,
                                                              c["top_driver"]))
PY
echo
if [ "$postgres" = 1 ]; then
  echo "Data:   $db  (PostgreSQL, password in $data/pg/uri; try: PGPASSWORD=... $collector scores --db '$db' --json)"
  echo "Logs:   $data/collector1.log $data/collector2.log"
  echo "Stop the cluster: bash tests/fakes/pg_cluster.sh stop $data/pg"
else
  echo "Data:   $db  (SQLite; try: $collector scores --db $db --json)"
  echo "Logs:   $log"
fi
echo "Load:   $data/fleetsim-summary.json"
echo "Catalog: $catalog  (try: $catalog_tool lookup --catalog $catalog 03f0:2b17 --interface-classes 07)"
echo "API:    $api  (vendor token in $data/api-token; every route: $api with the token)"
echo "Metrics: curl --cacert $cert ${api%/api/v1}/metrics  (Prometheus; open on loopback; rules and Grafana dashboards in dashboards/)"
echo
echo "The web dashboard (fleet, customer and endpoint views; docs/dashboard.md):"
echo "  Open:  ${api%/api/v1}/"
echo "         (the certificate is the demo's own, $cert: accept it in the browser)"
echo "  Token: $vendor_token"
echo "         (a vendor's: every customer; a customer-admin's sees its own only:"
echo "          $collector api-token create --db $db --role customer-admin --customer 'Contoso Legal')"
if [ "${DESKPULSE_DEMO_SERVE:-1}" = 1 ]; then
  echo "The collector serves agents and the API until Ctrl-C."
  wait "$serving" || true
fi
