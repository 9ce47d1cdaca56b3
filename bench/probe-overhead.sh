#!/usr/bin/env bash
# The probe's overhead, measured: a real redis-server's throughput under redis-benchmark
# without and with `runbook probe` running against it (rounds interleaved, side by side),
# and the probe's own CPU time. Prints both and their ratios.
#
#   bench/probe-overhead.sh [ROUNDS] [REQUESTS]     (defaults: 3 rounds, 200000 requests)
#
# Uses the release binary ($CARGO_TARGET_DIR/release/runbook, built if missing; or
# $RUNBOOK_BIN) and redis-server / redis-benchmark from PATH. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds="${1:-3}"
requests="${2:-200000}"
target_dir="${CARGO_TARGET_DIR:-target}"
bin="${RUNBOOK_BIN:-$target_dir/release/runbook}"
[ -x "$bin" ] || cargo build --release --locked >&2

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --logfile "$work/server.log" --daemonize no >/dev/null &
server=$!
probe=""
cleanup() {
  [ -z "$probe" ] || kill "$probe" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && break; sleep 0.05; done

# requests/s of SET and GET, as "set get"
throughput() {
  redis-benchmark -p "$port" -t set,get -n "$requests" -c 50 -q --csv 2>/dev/null |
    awk -F'","' '/"SET"/ {s=$2} /"GET"/ {g=$2} END {gsub(/"/,"",s); gsub(/"/,"",g); print s, g}'
}

ticks="$(getconf CLK_TCK)"
cpu_seconds() { # pid -> user+system CPU seconds so far
  awk -v t="$ticks" '{printf "%.3f", ($14 + $15) / t}' "/proc/$1/stat"
}

printf '%-6s %14s %14s %14s %14s %12s %10s\n' round "SET base/s" "SET probe/s" "GET base/s" "GET probe/s" "probe CPU s" "CPU %"
sum_ratio_set=0; sum_ratio_get=0; sum_cpu_pct=0
for round in $(seq "$rounds"); do
  read -r base_set base_get < <(throughput)

  "$bin" probe --endpoint "redis://127.0.0.1:$port" --interval 10ms --out "$work/probe-$round" \
    --format json >"$work/probe-$round.json" 2>/dev/null &
  probe=$!
  sleep 1
  start_ns="$(date +%s%N)"
  read -r with_set with_get < <(throughput)
  cpu="$(cpu_seconds "$probe")"
  wall="$(awk -v a="$start_ns" -v b="$(date +%s%N)" 'BEGIN {printf "%.3f", (b - a) / 1e9 + 1}')"
  kill -INT "$probe"
  wait "$probe" || true
  probe=""

  pct="$(awk -v c="$cpu" -v w="$wall" 'BEGIN {printf "%.2f", 100 * c / w}')"
  printf '%-6s %14s %14s %14s %14s %12s %10s\n' "$round" "$base_set" "$with_set" "$base_get" "$with_get" "$cpu" "$pct"
  sum_ratio_set="$(awk -v s="$sum_ratio_set" -v a="$with_set" -v b="$base_set" 'BEGIN {print s + a / b}')"
  sum_ratio_get="$(awk -v s="$sum_ratio_get" -v a="$with_get" -v b="$base_get" 'BEGIN {print s + a / b}')"
  sum_cpu_pct="$(awk -v s="$sum_cpu_pct" -v p="$pct" 'BEGIN {print s + p}')"
done
awk -v s="$sum_ratio_set" -v g="$sum_ratio_get" -v c="$sum_cpu_pct" -v n="$rounds" 'BEGIN {
  printf "\nthroughput with the probe / without (mean of %d rounds): SET %.3f, GET %.3f\n", n, s / n, g / n
  printf "probe CPU: %.2f %% of one core (200 requests/s: a SET and a GET every 10 ms)\n", c / n
}'
