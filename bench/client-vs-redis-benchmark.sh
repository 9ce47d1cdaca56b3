#!/usr/bin/env bash
# Is `runbook bench` fast enough that the server, not the client, sets the figures?
#
# Runs `runbook bench` and `redis-benchmark` with the same connections, pipeline depth,
# value size, key space and request count against the same server, one after the other,
# for SET and GET, and prints both throughputs and their ratio. Goal: runbook reaches at
# least 90% of redis-benchmark's ops/s in every case. Exits 1 when it does not.
#
# Fairness on a small machine: the server is pinned to one CPU and every client run to
# another (taskset), so the two clients get the same CPU budget against the same server
# and never run at the same time. The clients alternate within each round (the order
# flips every round) and the ratio reported is the median over the rounds. Server and
# clients run at the same raised scheduling priority (nice -10, when allowed) so that
# other work on the machine disturbs them less, and both clients alike.
#
# Settings (environment):
#   SERVER=redis-server   the server binary (valkey-server works too)
#   CONNECTIONS=50        -c / --connections
#   PIPELINES="1 16"      -P / --pipeline, one case per value
#   VALUE_SIZE=3          -d / --value-size
#   KEYSPACE=10000        -r / --keyspace
#   REQUESTS=200000       -n / --requests (per pipeline depth 1; times the depth above it, up to 2000000)
#   ROUNDS=3
#   SERVER_CPU=0 CLIENT_CPU=1
#   NICE=-10              scheduling priority of server and clients (0 to leave it)
#   TLS=0                 1: the server listens with TLS only (a self-signed certificate made
#                         with openssl), and both clients connect with TLS without checking it
#                         (redis-benchmark --tls --insecure; runbook through --resolve, which
#                         does the same for a tunnelled endpoint)
#   RUNBOOK_BIN=path      use this binary instead of building a release one
set -euo pipefail

SERVER=${SERVER:-redis-server}
CONNECTIONS=${CONNECTIONS:-50}
PIPELINES=${PIPELINES:-"1 16"}
VALUE_SIZE=${VALUE_SIZE:-3}
KEYSPACE=${KEYSPACE:-10000}
REQUESTS=${REQUESTS:-200000}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
NICE=${NICE:--10}
TLS=${TLS:-0}
nice -n "$NICE" true 2>/dev/null || NICE=0
pin_client() { nice -n "$NICE" taskset -c "$CLIENT_CPU" "$@"; }

cd "$(dirname "$0")/.."

tools=("$SERVER" redis-benchmark redis-cli taskset python3)
[[ "$TLS" == 1 ]] && tools+=(openssl)
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || { echo "error: $tool is not installed (run scripts/setup)" >&2; exit 2; }
done

if [[ -z "${RUNBOOK_BIN:-}" ]]; then
    # The AWS SDK crates are not on the benchmark's path; building them without
    # optimisation keeps the release build short. Everything the client runs is optimised.
    cargo build --release --locked --quiet \
        --config 'profile.release.package."*".debug=0' \
        --config 'profile.release.package.aws-sdk-ec2.opt-level=0' \
        --config 'profile.release.package.aws-sdk-cloudformation.opt-level=0' \
        --config 'profile.release.package.aws-sdk-elasticache.opt-level=0' \
        --config 'profile.release.package.aws-sdk-cloudwatch.opt-level=0'
    RUNBOOK_BIN="${CARGO_TARGET_DIR:-target}/release/runbook"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
listen=(--port "$port")
cli=(-h 127.0.0.1 -p "$port")
url="127.0.0.1:$port"
resolve=()
if [[ "$TLS" == 1 ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=cache.test \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    listen=(--port 0 --tls-port "$port" --tls-cert-file "$dir/cert.pem" --tls-key-file "$dir/key.pem"
        --tls-auth-clients no)
    cli+=(--tls --insecure)
    # The certificate names cache.test; runbook reaches it through --resolve, which
    # accepts the certificate of a tunnelled endpoint as redis-benchmark --insecure does.
    url="rediss://cache.test:$port"
    resolve=(--resolve "cache.test:$port=127.0.0.1:$port")
fi
nice -n "$NICE" taskset -c "$SERVER_CPU" "$SERVER" "${listen[@]}" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$dir" --logfile server.log &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
    redis-cli "${cli[@]}" PING >/dev/null 2>&1 && break
    sleep 0.05
done

echo "server:  $("$SERVER" --version | head -1) on 127.0.0.1:$port$([[ "$TLS" == 1 ]] && echo " (TLS)"), pinned to CPU $SERVER_CPU, nice $NICE"
echo "clients: redis-benchmark $(redis-benchmark --version | awk '{print $2}') and $RUNBOOK_BIN, each pinned to CPU $CLIENT_CPU, nice $NICE, one at a time"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine adds noise to both clients alike)"
echo "settings: connections $CONNECTIONS, value size $VALUE_SIZE, keyspace $KEYSPACE, $ROUNDS rounds"
echo "latency: both clients time each request from the write of its pipeline batch;"
echo "         redis-benchmark stops the clock at the batch's first reply bytes, runbook at each reply"
echo

# redis-benchmark prints CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
redis_benchmark() { # op pipeline requests -> "ops p50"
    pin_client redis-benchmark "${cli[@]}" -c "$CONNECTIONS" -P "$2" \
        -d "$VALUE_SIZE" -r "$KEYSPACE" -n "$3" -t "$1" --csv 2>/dev/null |
        python3 -c 'import csv, sys
rows = [r for r in csv.reader(sys.stdin) if r and r[0] != "test"]
print(rows[0][1], rows[0][4])'
}

runbook_bench() { # op pipeline requests -> "ops p50"
    pin_client "$RUNBOOK_BIN" bench --endpoint "$url" ${resolve[@]+"${resolve[@]}"} --workload "$1" \
        --connections "$CONNECTIONS" --pipeline "$2" --value-size "$VALUE_SIZE" --keyspace "$KEYSPACE" \
        --key-prefix key: --requests "$3" --format json 2>/dev/null |
        python3 -c 'import json, sys
r = json.load(sys.stdin)["results"][0]
print(r["ops_per_sec"], r["p50_ms"])'
}

printf '%-4s %-3s %5s  %16s %8s  %16s %8s  %7s\n' op P round "redis-benchmark" "p50 ms" "runbook bench" "p50 ms" ratio
worst=""
summary=()
for pipeline in $PIPELINES; do
    requests=$((REQUESTS * pipeline))
    ((requests > 2000000)) && requests=2000000
    for op in set get; do
        ratios=()
        for round in $(seq "$ROUNDS"); do
            if ((round % 2)); then
                read -r rb rb_p50 < <(redis_benchmark "$op" "$pipeline" "$requests")
                read -r rn rn_p50 < <(runbook_bench "$op" "$pipeline" "$requests")
            else
                read -r rn rn_p50 < <(runbook_bench "$op" "$pipeline" "$requests")
                read -r rb rb_p50 < <(redis_benchmark "$op" "$pipeline" "$requests")
            fi
            ratio=$(python3 -c "print(f'{$rn / $rb:.3f}')")
            ratios+=("$ratio")
            printf '%-4s %-3s %5s  %16.0f %8.3f  %16.0f %8.3f  %6.1f%%\n' \
                "$op" "$pipeline" "$round" "$rb" "$rb_p50" "$rn" "$rn_p50" "$(python3 -c "print($ratio * 100)")"
        done
        median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
        summary+=("$(printf '%-4s P=%-3s requests %-8s median ratio %5.1f%%' "$op" "$pipeline" "$requests" "$(python3 -c "print($median * 100)")")")
        if [[ -z "$worst" ]] || python3 -c "import sys; sys.exit(0 if $median < $worst else 1)"; then
            worst=$median
        fi
    done
done

echo
echo "runbook bench ops/s as a share of redis-benchmark's (median of $ROUNDS rounds):"
printf '  %s\n' "${summary[@]}"
pct=$(python3 -c "print(f'{$worst * 100:.1f}')")
if python3 -c "import sys; sys.exit(0 if $worst >= 0.9 else 1)"; then
    echo "lowest: $pct% (goal: at least 90%): met"
else
    echo "lowest: $pct% (goal: at least 90%): NOT met"
    exit 1
fi
