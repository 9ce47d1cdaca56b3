#!/usr/bin/env bash
# How plan time grows with the number of steps: generated runbooks of N exec steps, each
# reading the previous step's output, planned by the release binary. Prints seconds per
# size and the ratio of each to the smallest size per step: near 1 means linear growth
# (the goal: at most 1 s for 10,000 steps).
# Usage: bench/plan-scaling.sh [STEPS...]    (default: 1000 2000 4000 10000)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 2000 4000 10000)
cargo build --release --locked --manifest-path "$here/Cargo.toml" >&2
bin="${CARGO_TARGET_DIR:-$here/target}/release/runbook"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
base=""
printf '%8s %10s %14s\n' steps seconds "per-step ratio"
for n in "${sizes[@]}"; do
  python3 - "$n" >"$work/rb.yaml" <<'PY'
import sys
n = int(sys.argv[1])
print("version: 1\nname: scaling\nsteps:")
print("  - id: s0\n    action: exec\n    with: { command: echo start }")
for i in range(1, n):
    print(f"  - id: s{i}\n    action: exec\n    with: {{ command: \"echo {{{{ steps.s{i-1}.outputs.stdout }}}}\" }}")
PY
  start="$(date +%s.%N)"
  "$bin" plan "$work/rb.yaml" >/dev/null
  secs="$(python3 -c "print(f'{$(date +%s.%N) - $start:.3f}')")"
  [ -n "$base" ] || base="$(python3 -c "print($secs / $n)")"
  printf '%8s %10s %14s\n' "$n" "$secs" "$(python3 -c "print(f'{$secs / $n / $base:.2f}')")"
done
