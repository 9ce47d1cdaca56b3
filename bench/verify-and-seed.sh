#!/usr/bin/env bash
# Seeding and key-parity speed, each next to a redis-benchmark baseline run on the same
# servers, plus the peak memory of `runbook verify` at two key counts.
#
# For each key count: start a Redis source and a Valkey target on free loopback ports,
#   seed    `runbook seed` the source                vs  redis-benchmark -P writing as many SETs
#   verify  replicate to Valkey, promote, then
#           `runbook verify` source against target   vs  redis-benchmark -P reading every seeded
#                                                        value from both servers at once
# and print keys/s and the ratios, for two workloads: 100-byte strings, and the mixed seeded
# types (string, hash, list, set, zset, and streams with a consumer group and pending
# entries; 32-byte values, 8 elements). The verify goal is a
# ratio (time / baseline time) of 1.5 or less; its peak RSS must not grow with the key
# count. For verify it also prints the CPU seconds the source, the target and the client
# spent on the check and on the baseline (the source's is what a check costs a production
# primary), and the least time that CPU allows on this machine's cores. Last, the peak RSS
# of verifying one 50 MB string.
#
# Usage: bench/verify-and-seed.sh [KEYS...]    (default: 100000 1000000)
# Needs redis-server, valkey-server, redis-benchmark, redis-cli, /usr/bin/time, python3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(100000 1000000)
pipeline=64
cores="$(nproc)"

cargo build --release --locked --manifest-path "$here/Cargo.toml" >&2
bin="${CARGO_TARGET_DIR:-$here/target}/release/runbook"
redis_server="${RUNBOOK_REDIS_SERVER:-redis-server}"
valkey_server="${RUNBOOK_VALKEY_SERVER:-valkey-server}"

work="$(mktemp -d)"
cleanup() {
  # `start` runs in a command substitution, so the servers' pids are kept in files.
  for pidfile in "$work"/*/server.pid; do
    [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() { # binary dir -> port
  local port
  port="$(free_port)"
  mkdir -p "$2"
  # Its own output goes nowhere: an open stdout would keep the caller's $(...) waiting.
  "$1" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$2" --logfile server.log \
    >/dev/null 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$2/server.pid"
  until redis-cli -p "$port" PING >/dev/null 2>&1; do
    # A server that could not start (its port taken meanwhile) would be waited for forever.
    kill -0 "$pid" 2>/dev/null || { echo "$1 did not start on port $port; see $2" >&2; exit 1; }
    sleep 0.05
  done
  echo "$port"
}

field() { # port name -> INFO replication value
  redis-cli -p "$1" INFO replication | tr -d '\r' | sed -n "s/^$2://p"
}

now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
peak_kb() { sed -n 's/.*Maximum resident set size (kbytes): //p' "$1"; }
client_cpu() { # /usr/bin/time -v output -> user + system seconds
  sed -n 's/.*\(User\|System\) time (seconds): //p' "$1" | awk '{s += $1} END {print s}'
}
cpu_s() { # server dir -> CPU seconds (user + system) the server has used so far
  python3 -c "import os; f = open('/proc/$(cat "$1/server.pid")/stat').read().rsplit(')', 1)[1].split(); print((int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK'))"
}

read_cmd() { # type -> redis-benchmark arguments that read one whole seeded value
  case "$1" in
    string) echo "GET seed:string:__rand_int__" ;;
    hash) echo "HGETALL seed:hash:__rand_int__" ;;
    list) echo "LRANGE seed:list:__rand_int__ 0 -1" ;;
    set) echo "SMEMBERS seed:set:__rand_int__" ;;
    zset) echo "ZRANGE seed:zset:__rand_int__ 0 -1 WITHSCORES" ;;
    stream) echo "XRANGE seed:stream:__rand_int__ - +" ;;
  esac
}

declare -A peak
printf '%-9s %-8s %-7s %12s %12s %8s %10s\n' keys workload what runbook/s baseline/s ratio peak_rss
for n in "${counts[@]}"; do
for workload in strings mixed; do
  case "$workload" in
    strings) types=(string) seed_args=(--types string --value-size 100) ;;
    mixed) types=(string hash list set zset stream) seed_args=(--types string,hash,list,set,zset,stream) ;;
  esac
  src="$(start "$redis_server" "$work/src-$n-$workload")"
  dst="$(start "$valkey_server" "$work/dst-$n-$workload")"

  # Seeding: the same number of pipelined writes with redis-benchmark first (then flushed).
  t0="$(now)"
  redis-benchmark -p "$src" -n "$n" -r "$n" -P "$pipeline" -d 32 -q -t set >/dev/null
  base_seed="$(calc "$n / ($(now) - $t0)")"
  redis-cli -p "$src" FLUSHALL >/dev/null
  /usr/bin/time -v -o "$work/seed-$n.time" "$bin" seed --endpoint "127.0.0.1:$src" --keys "$n" \
    ${seed_args[@]+"${seed_args[@]}"} --format json >"$work/seed-$n.json"
  seed_rate="$(json "['keys_per_sec']" <"$work/seed-$n.json")"
  printf '%-9s %-8s %-7s %12.0f %12.0f %8.2f %9sK\n' "$n" "$workload" seed "$seed_rate" "$base_seed" \
    "$(calc "$base_seed / $seed_rate")" "$(peak_kb "$work/seed-$n.time")"

  # Replicate to Valkey, wait for it to have everything, promote.
  redis-cli -p "$dst" REPLICAOF 127.0.0.1 "$src" >/dev/null
  until [ "$(field "$dst" master_link_status)" = up ] &&
    [ "$(field "$src" master_repl_offset)" = "$(field "$dst" slave_repl_offset)" ]; do sleep 0.2; done
  redis-cli -p "$dst" REPLICAOF NO ONE >/dev/null

  src_cpu0="$(cpu_s "$work/src-$n-$workload")"
  dst_cpu0="$(cpu_s "$work/dst-$n-$workload")"
  /usr/bin/time -v -o "$work/verify-$n.time" "$bin" verify --source "127.0.0.1:$src" --target "127.0.0.1:$dst" \
    --format json >"$work/verify-$n.json"
  src_cpu1="$(cpu_s "$work/src-$n-$workload")"
  dst_cpu1="$(cpu_s "$work/dst-$n-$workload")"
  checked="$(json "['keys_checked']" <"$work/verify-$n.json")"
  parity="$(json "['parity']" <"$work/verify-$n.json")"
  verify_ms="$(json "['elapsed_ms']" <"$work/verify-$n.json")"
  [ "$checked" = "$n" ] && [ "$parity" = True ] || {
    echo "verify found $checked keys (parity $parity) of $n" >&2
    exit 1
  }

  # Baseline: read every seeded value, pipelined, from both servers at once.
  per_type=$((n / ${#types[@]}))
  base_s=0
  # The client CPU below sums this baseline's files only, not an earlier workload's types.
  rm -f "$work"/base-*.time
  for t in "${types[@]}"; do
    # shellcheck disable=SC2046
    t0="$(now)"
    /usr/bin/time -f '%U %S' -o "$work/base-src-$t.time" \
      redis-benchmark -p "$src" -n "$per_type" -r "$per_type" -P "$pipeline" -q $(read_cmd "$t") >/dev/null &
    a=$!
    /usr/bin/time -f '%U %S' -o "$work/base-dst-$t.time" \
      redis-benchmark -p "$dst" -n "$per_type" -r "$per_type" -P "$pipeline" -q $(read_cmd "$t") >/dev/null &
    b=$!
    wait "$a" "$b"
    base_s="$(calc "$base_s + $(now) - $t0")"
  done
  src_cpu2="$(cpu_s "$work/src-$n-$workload")"
  dst_cpu2="$(cpu_s "$work/dst-$n-$workload")"
  verify_rate="$(calc "$n / ($verify_ms / 1000)")"
  base_rate="$(calc "$n / $base_s")"
  peak[$n]="$(peak_kb "$work/verify-$n.time")"
  printf '%-9s %-8s %-7s %12.0f %12.0f %8.2f %9sK\n' "$n" "$workload" verify \
    "$verify_rate" "$base_rate" "$(calc "$base_rate / $verify_rate")" "${peak[$n]}"
  # Where the time went: CPU seconds of each process, and the least time that CPU allows on
  # this machine's cores, as a ratio to the baseline's time. Both servers and the client
  # share the cores, and each server runs its commands on one thread.
  python3 - "$cores" "$base_s" \
    "$src_cpu0" "$src_cpu1" "$src_cpu2" "$dst_cpu0" "$dst_cpu1" "$dst_cpu2" \
    "$(client_cpu "$work/verify-$n.time")" "$(cat "$work"/base-*.time | awk '{s += $1 + $2} END {print s}')" <<'PY'
import sys
cores, base_s, s0, s1, s2, d0, d1, d2, client, base_client = map(float, sys.argv[1:])
verify = (s1 - s0, d1 - d0, client)
base = (s2 - s1, d2 - d1, base_client)
floor = lambda cpu: max(cpu[0], cpu[1], sum(cpu) / cores)
print(f"{'':27}CPU s, verify / baseline: source {verify[0]:.2f} / {base[0]:.2f},"
      f" target {verify[1]:.2f} / {base[1]:.2f}, client {verify[2]:.2f} / {base[2]:.2f}")
print(f"{'':27}least time on {cores:.0f} cores, as a ratio to the baseline's {base_s:.2f} s:"
      f" the servers' CPU alone {floor(verify[:2] + (0,)) / base_s:.2f},"
      f" with the client's {floor(verify) / base_s:.2f}")
PY

  redis-cli -p "$src" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  redis-cli -p "$dst" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
done
done

# One big string: verify reads it in GETRANGE ranges, so its peak RSS stays that of the
# key-count runs however big the value.
big_mb=50
src="$(start "$redis_server" "$work/src-big")"
dst="$(start "$valkey_server" "$work/dst-big")"
head -c "$((big_mb * 1024 * 1024))" /dev/urandom >"$work/big.bin"
for port in "$src" "$dst"; do redis-cli -p "$port" -x SET big:string <"$work/big.bin" >/dev/null; done
/usr/bin/time -v -o "$work/verify-big.time" "$bin" verify --source "127.0.0.1:$src" --target "127.0.0.1:$dst" \
  --format json >"$work/verify-big.json"
[ "$(json "['parity']" <"$work/verify-big.json")" = True ] || { echo "the big string differs" >&2; exit 1; }
echo "verify of one ${big_mb} MB string: peak RSS $(peak_kb "$work/verify-big.time")K"
redis-cli -p "$src" SHUTDOWN NOSAVE >/dev/null 2>&1 || true
redis-cli -p "$dst" SHUTDOWN NOSAVE >/dev/null 2>&1 || true

echo "ratio = baseline keys/s / runbook keys/s (verify goal: <= 1.5)"
if [ ${#counts[@]} -ge 2 ]; then
  first="${counts[0]}"
  last="${counts[-1]}"
  echo "verify peak RSS: ${peak[$first]}K at $first keys, ${peak[$last]}K at $last keys" \
    "(x$(calc "round(${peak[$last]} / ${peak[$first]}, 2)") for x$((last / first)) keys)"
fi
