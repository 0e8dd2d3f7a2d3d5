#!/usr/bin/env bash
# One storage node alone against the disk's own limit: a gateway with `--part-count 1` (so every
# file is one chunk on one node, and the gateway is the node's only client), one `sixfold-node
# --shards 1`, then `sixfold-bench run` with its O_DIRECT baseline on the same filesystem and
# fio for reference, all in one run.
#
#   bench/one-node.sh [DIR] [SIZE] [FILES]      (defaults: ./sixfold-one-node 1GiB 2)
#
# Needs release binaries (`cargo build --release --bins`) and fio. Everything it starts is
# stopped on exit; DIR is removed unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(realpath -m "${1:-./sixfold-one-node}")
size=${2:-1GiB}
files=${3:-2}
bin=target/release
port=${PORT:-18190}
quic=${QUIC_PORT:-18191}

for b in sixfold-gateway sixfold-node sixfold-bench; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: run cargo build --release --bins" >&2; exit 2; }
done
command -v fio >/dev/null || { echo "fio is not installed (apt-get install fio)" >&2; exit 2; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT

rm -rf "$dir" && mkdir -p "$dir/gateway" "$dir/node"
"$bin/sixfold-gateway" certs init --dir "$dir/gateway/certs" >/dev/null
"$bin/sixfold-gateway" certs issue-node --dir "$dir/gateway/certs" --name n0 --ip 127.0.0.1 \
  --out "$dir/node/certs" >/dev/null

echo "== fio on $(df --output=fstype,source "$dir" | tail -1)"
for rw in write read; do
  fio --name="$rw" --filename="$dir/fio.dat" --size=2G --rw="$rw" --direct=1 \
    --ioengine=io_uring --bs=1M --iodepth=16 --end_fsync=1 --output-format=terse \
    | awk -F';' -v rw="$rw" '{ kb = (rw == "write") ? $48 : $7; printf "fio %-5s %8.0f MB/s\n", rw, kb * 1024 / 1e6 }'
done
rm -f "$dir/fio.dat"

"$bin/sixfold-gateway" serve --data-dir "$dir/gateway" --listen "127.0.0.1:$port" \
  --part-count 1 2>"$dir/gateway.log" &
pids+=($!)
"$bin/sixfold-node" --data-dir "$dir/node" --listen "127.0.0.1:$quic" --shards 1 --name n0 \
  --gateway "http://127.0.0.1:$port" 2>"$dir/node.log" &
pids+=($!)
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/nodes" 2>/dev/null | grep -q '"up"' && break
  sleep 0.2
done

echo "== sixfold-bench: $files x $size through one node, one shard"
"$bin/sixfold-bench" run --gateway "http://127.0.0.1:$port" --size "$size" --files "$files" \
  --baseline "$dir" --pids "$(IFS=,; echo "${pids[*]}")" --no-progress \
  --report "$dir/report.json" --delete
cp "$dir/report.json" "./one-node-report.json"
echo "report: ./one-node-report.json"
