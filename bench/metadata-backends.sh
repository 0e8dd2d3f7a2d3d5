#!/usr/bin/env bash
# The two metadata backends side by side, in one run: a fresh `sixfold-gateway dev` on redb,
# then one on PostgreSQL, each loaded with the same small-file upload run (`sixfold-bench run`),
# and each gateway's own commit histogram (`sixfold_metadata_commit_seconds`) read afterwards.
# Prints, per backend: small-file uploads per second, the client's upload latency p50/p99, and
# the commit transaction's p50/p99 (upper edge of the histogram bucket holding it).
#
#   bench/metadata-backends.sh POSTGRES_URL [FILES] [CONCURRENCY] [SIZE]
#                                              (defaults: 2000 16 4KiB)
#
# POSTGRES_URL names a server where a database `sixfold_bench_<random>` may be created (and is
# dropped at the end), e.g. postgres://sixfold@127.0.0.1:55471/postgres. Needs release binaries
# (`cargo build --release --bins`), psql or python3 with no extra module (the database is made
# through the gateway's own test of the URL: see below). Everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

pg=${1:?give a postgres:// URL of a server to make a database on}
files=${2:-2000}
conc=${3:-16}
size=${4:-4KiB}
bin=target/release
port=${PORT:-18280}
work=$(mktemp -d /tmp/sixfold-meta-bench.XXXXXX)
db="sixfold_bench_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
psql_bin=$(command -v psql || echo /usr/lib/postgresql/15/bin/psql)

for b in sixfold-gateway sixfold-node sixfold-bench; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: run cargo build --release --bins" >&2; exit 2; }
done
[ -x "$psql_bin" ] || { echo "psql is needed to create the bench database" >&2; exit 2; }

gw=""
cleanup() {
  if [ -n "$gw" ]; then kill "$gw" 2>/dev/null || true; wait "$gw" 2>/dev/null || true; fi
  "$psql_bin" "$pg" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The URL with its database name replaced.
db_url=$(python3 -c 'import sys,re
u,d=sys.argv[1],sys.argv[2]
base,_,q=u.partition("?")
m=re.match(r"^(\w+://[^/]*)(/.*)?$",base)
print(m.group(1)+"/"+d+("?"+q if q else ""))' "$pg" "$db")
"$psql_bin" "$pg" -qc "CREATE DATABASE $db" >/dev/null

# p50 and p99 of a Prometheus histogram `name` in metrics text on stdin, as bucket upper edges.
quantiles() {
  python3 -c 'import sys
name=sys.argv[1]
b=[]
for l in sys.stdin:
    if l.startswith(name+"_bucket{le=\""):
        le=l.split("\"")[1]; n=float(l.rsplit(" ",1)[1])
        b.append((float("inf") if le=="+Inf" else float(le), n))
total=b[-1][1] if b else 0
def q(p):
    for le,n in b:
        if total and n>=p*total: return "%.1f ms"%(le*1000) if le!=float("inf") else "> 10 s"
    return "-"
print("commits %d  p50 <= %s  p99 <= %s" % (total, q(0.5), q(0.99)))' "$1"
}

run() {
  local name=$1; shift
  local dir="$work/$name"
  "$bin/sixfold-gateway" dev --data-dir "$dir" --listen "127.0.0.1:$port" --s3-listen "127.0.0.1:$((port + 1))" "$@" \
    >"$work/$name-dev.log" 2>&1 &
  gw=$!
  for _ in $(seq 600); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { echo "$name: the cluster did not come up" >&2; tail "$work/$name-dev.log" >&2; exit 1; }
  echo "== $name"
  "$bin/sixfold-bench" run --gateway "http://127.0.0.1:$port" --token-file "$dir/admin.token" \
    --mode upload --size "$size" --files "$files" --concurrency "$conc" --delete --no-progress \
    --report "$work/$name.json" | grep -Ei "upload|p50|errors" || true
  python3 -c 'import json,sys
u=json.load(open(sys.argv[1]))["upload"]
print("small-file uploads per second: %.0f" % (u["files_ok"]/u["seconds"] if u["seconds"] else 0))' "$work/$name.json"
  curl -fsS -H "Authorization: Bearer $(cat "$dir/admin.token")" "http://127.0.0.1:$port/metrics" \
    | quantiles sixfold_metadata_commit_seconds
  kill "$gw"; wait "$gw" 2>/dev/null || true; gw=""
}

run redb
run postgres --metadata "$db_url"
