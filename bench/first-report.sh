#!/usr/bin/env bash
# How long a newcomer waits for the first report: from a clean clone and an empty build
# directory to the report of the main job (`bash scripts/rehearse`), split into set-up, build
# and rehearsal, against the goal of 7 minutes. Also prints the sizes of the debug binary the
# rehearsal built and, with --release, of a release build (goal: at most 60 MB).
#
# Usage: bench/first-report.sh [--release]     (run from anywhere inside the repository)
# The packages setup installs are left as they are: remove them first to time their install too.
set -euo pipefail
release=0
[ "${1:-}" != --release ] || release=1
repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
export CARGO_TARGET_DIR="$work/target"
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.0f}')"; }
mmss() { python3 -c "s=round($1); print(f'{s // 60} min {s % 60:02d} s')"; }

cd "$work/clone"
t0="$(now)"
bash scripts/setup rehearse 2>"$work/setup.log"
t1="$(now)"
cargo build --locked 2>"$work/build.log"
t2="$(now)"
# The rehearsal itself; scripts/rehearse would build again (a no-op now) and run the same command.
bash scripts/rehearse >"$work/run.out" 2>"$work/run.log" || {
  tail -20 "$work/run.log" >&2
  exit 1
}
t3="$(now)"
report="$(ls -1 .runbook/runs/*/report.html 2>/dev/null | head -1)"
[ -n "$report" ] || { echo "first-report: the rehearsal wrote no report" >&2; exit 1; }
t_report="$(stat -c %Y "$report")"

total="$(python3 -c "print($t_report - $t0)")"
printf 'first report after %s (goal: at most 7 min; %s s)\n' "$(mmss "$total")" "$(secs 0 "$total")"
printf '  set-up     %4s s\n' "$(secs "$t0" "$t1")"
printf '  build      %4s s  (cargo build, empty build directory, %s cores)\n' "$(secs "$t1" "$t2")" "$(nproc)"
printf '  rehearsal  %4s s  (scripts/rehearse to the report: %s)\n' "$(secs "$t2" "$t_report")" "${report#.runbook/runs/}"
printf 'debug binary   %s MB\n' "$(( $(stat -c %s "$CARGO_TARGET_DIR/debug/runbook") / 1000000 ))"
if [ "$release" = 1 ]; then
  t4="$(now)"
  cargo build --release --locked 2>"$work/release.log"
  printf 'release binary %s MB (goal: at most 60 MB; built in %s s)\n' \
    "$(( $(stat -c %s "$CARGO_TARGET_DIR/release/runbook") / 1000000 ))" "$(secs "$t4" "$(now)")"
fi
