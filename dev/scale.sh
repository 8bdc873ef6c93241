#!/usr/bin/env bash
# Distributed mode's scaling curve: the same deposit workload on 1, 2 and 4 processes per role
# (and as many Kafka partitions), each on a fresh cluster (dev/cluster.sh), printing deposits/s,
# latency and the CPU every part of the bank used per deposit (roles, PostgreSQL, Kafka).
#
#   dev/scale.sh [COUNTS...]        default: 1 2 4
#
# Environment:
#   SCALE_DURATION      the bench's --duration (default 15s)
#   SCALE_CONCURRENCY   the bench's --concurrency (default 64)
#   ONLINEBANK_BIN      the executable (default target/release/onlinebank)
#
# On this 2-core machine every process shares the same two cores, so the curve shows the cost of
# each process per deposit rather than added capacity; read it where more cores exist.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="${ONLINEBANK_BIN:-$ROOT/target/release/onlinebank}"
DURATION="${SCALE_DURATION:-15s}"
CONCURRENCY="${SCALE_CONCURRENCY:-64}"
DEV_DIR="${ONLINEBANK_DEV_DIR:-/tmp/onlinebank-dev}"
COUNTS=("$@")
[ "${#COUNTS[@]}" -gt 0 ] || COUNTS=(1 2 4)
[ -x "$BIN" ] || { echo "scale.sh: no $BIN: cargo build --release -p onlinebank" >&2; exit 1; }
export ONLINEBANK_BIN="$BIN"

# CPU seconds (user + system) of the given pids, summed; dead pids count 0.
cpu_of() {
    local total=0 pid ticks
    for pid in "$@"; do
        ticks="$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
        total=$((total + ticks))
    done
    echo "$total"
}

bank_pids() { cat "$DEV_DIR"/cluster/pids/*.pid 2>/dev/null || true; }
# "NAME TICKS" for every bank process (NAME as in cluster/pids/NAME.pid).
role_cpu() {
    local file
    for file in "$DEV_DIR"/cluster/pids/*.pid; do
        [ -e "$file" ] && echo "$(basename "$file" .pid) $(cpu_of "$(cat "$file")")"
    done
}
postgres_pids() { pgrep -f 'postgres' -u "$(stat -c %U "$DEV_DIR/postgres/data" 2>/dev/null || echo root)" || true; }
kafka_pids() { cat "$DEV_DIR/kafka/kafka.pid" 2>/dev/null || true; }
# PostgreSQL's CPU so far: its live processes' plus what its ended backends used (the
# postmaster's children totals), taken afresh each time: backends a role's pool opens during the
# run count too (an earlier version took the pids once, before, and missed them).
postgres_cpu() {
    local pids postmaster reaped
    mapfile -t pids < <(postgres_pids)
    postmaster="$(head -1 "$DEV_DIR/postgres/data/postmaster.pid" 2>/dev/null || echo 0)"
    reaped="$(awk '{print $16 + $17}' "/proc/$postmaster/stat" 2>/dev/null || echo 0)"
    echo $(($(cpu_of "${pids[@]}") + reaped))
}

cleanup() { "$HERE/cluster.sh" down >/dev/null 2>&1 || true; }
trap cleanup EXIT

results=()
for count in "${COUNTS[@]}"; do
    echo "== $count process(es) per role, $count partition(s)" >&2
    "$HERE/cluster.sh" down >/dev/null 2>&1 || true
    "$HERE/cluster.sh" up --replicas "$count" --partitions "$count" --namespace "scale$count" >&2
    mapfile -t bank < <(bank_pids)
    mapfile -t kafka < <(kafka_pids)
    before=("$(cpu_of "${bank[@]}")" "$(postgres_cpu)" "$(cpu_of "${kafka[@]}")")
    roles_before="$(role_cpu)"
    report="$(mktemp)"
    "$BIN" bench --url http://127.0.0.1:8080 --duration "$DURATION" --concurrency "$CONCURRENCY" \
        --accounts 100 --mix deposit=100 --ceiling-duration 0s --json >"$report"
    after=("$(cpu_of "${bank[@]}")" "$(postgres_cpu)" "$(cpu_of "${kafka[@]}")")
    python3 "$HERE/scale_row.py" --per-process "$report" "$(getconf CLK_TCK)" "$roles_before" "$(role_cpu)" >&2
    line="$(python3 "$HERE/scale_row.py" "$report" "$count" "$(getconf CLK_TCK)" "${before[@]}" "${after[@]}")"
    rm -f "$report"
    results+=("$line")
    echo "$line" >&2
done

echo "| processes and partitions per role | deposits/s | p50 | p99 | CPU per deposit | roles | PostgreSQL | Kafka | invariants |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
